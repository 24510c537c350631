"""Weights a user brings: a MONAI bundle and an nnU-Net results folder, built here in tmp_path.

Both are run through their own machinery (the bundle's inference.json evaluator, nnU-Net's
predictor) with tiny networks whose weights are set by hand, so the output is known in advance:
the tests check that their labels land on ours, where predicted, in the input's geometry (a
non-identity origin, spacing and direction).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from radqc.models.byo.common import build_label_mapping, load_name_table
from radqc.models.registry import ModelError, load_label_set

torch = pytest.importorskip("torch")

OURS = load_label_set("ct_organs").by_name()

# ------------------------------------------------------------------------------------------
# builders


def _image(arr_zyx: np.ndarray) -> sitk.Image:
    """A CT volume in a non-trivial geometry: anisotropic spacing, shifted origin, flipped y."""
    img = sitk.GetImageFromArray(arr_zyx.astype(np.float32))
    img.SetSpacing((1.5, 2.0, 2.5))
    img.SetOrigin((-30.0, 12.5, 100.0))
    img.SetDirection((1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    return img


def _same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    assert np.allclose(a.GetOrigin(), b.GetOrigin())
    assert np.allclose(a.GetSpacing(), b.GetSpacing())
    assert np.allclose(a.GetDirection(), b.GetDirection())


#: The tiny bundle's output values and names (channel_def in its metadata).
TINY_CHANNELS = {0: "background", 1: "spleen", 2: "kidney_right", 3: "lung_upper_lobe_left", 4: "gallbladder",
                 5: "liver"}


def _inference_config(network_def: dict[str, Any], preprocessing_tail: list[dict[str, Any]], pixdim: Any,
                      roi: list[int], modelname: str = "'model.pt'", extra: dict[str, Any] | None = None) -> dict:
    """An inference config with the layout of MONAI's wholeBody_ct_segmentation bundle
    (datalist from a glob, Dataset/DataLoader, SlidingWindowInferer, Invertd + SaveImaged
    postprocessing, SupervisedEvaluator, CheckpointLoader run by `initialize`)."""
    cfg: dict[str, Any] = {
        "imports": ["$import glob", "$import numpy", "$import os"],
        "bundle_root": ".",
        "image_key": "image",
        "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".nii.gz",
        "output_dtype": "$numpy.float32",
        "output_postfix": "trans",
        "separate_folder": True,
        "dataset_dir": "sampledata",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "pixdim": pixdim,
        "modelname": f"${modelname}",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key"},
            {"_target_": "EnsureTyped", "keys": "@image_key"},
            {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
            {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "@image_key", "pixdim": "@pixdim", "mode": "bilinear"},
            *preprocessing_tail,
        ]},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 1},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": roi, "sw_batch_size": 1, "overlap": 0.25,
                    "padding_mode": "replicate", "mode": "gaussian",
                    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
             "nearest_interp": True, "to_tensor": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_ext": "@output_ext",
             "output_dtype": "@output_dtype", "output_postfix": "@output_postfix",
             "separate_folder": "@separate_folder"},
        ]},
        "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": True},
        "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/' + @modelname",
                             "load_dict": {"model": "@network"}},
        "initialize": ["$setattr(torch.backends.cudnn, 'benchmark', True)", "$@checkpointloader(@evaluator)"],
        "run": ["$@evaluator.run()"],
    }
    cfg.update(extra or {})
    return cfg


def _metadata(channels: dict[int, str] | None, name: str = "tiny test bundle") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "image", "format": "segmentation", "num_channels": len(channels or {}) or 6}
    if channels is not None:
        out["channel_def"] = {str(k): v for k, v in channels.items()}
    return {"version": "0.0.1", "name": name, "network_data_format": {"outputs": {"pred": out}}}


def write_tiny_bundle(root: Path, channels: dict[int, str] | None = TINY_CHANNELS) -> Path:
    """A bundle whose network is one 1x1x1 convolution with hand-set weights.

    After ScaleIntensityRanged x = HU / 1000; the logits are linear in x, so the argmax is
    their label 3 below HU -600, 4 in (-600, -400), 0 in (-400, 100) and 5 above HU 100."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    net_def = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 6, "kernel_size": 1}
    tail = [{"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": -1000, "a_max": 1000,
             "b_min": -1.0, "b_max": 1.0, "clip": True}]
    cfg = _inference_config(net_def, tail, [2.0, 2.0, 2.0], [16, 16, 16])
    (root / "configs" / "inference.json").write_text(json.dumps(cfg, indent=2))
    (root / "configs" / "metadata.json").write_text(json.dumps(_metadata(channels), indent=2))
    net = torch.nn.Conv3d(1, 6, 1)
    slope = {0: 0.0, 1: 0.0, 2: 0.0, 3: -10.0, 4: -5.0, 5: 10.0}
    bias = {0: 0.0, 1: -50.0, 2: -50.0, 3: -5.0, 4: -2.0, 5: -1.0}
    with torch.no_grad():
        net.weight.zero_()
        for k in range(6):
            net.weight[k, 0, 0, 0, 0] = slope[k]
            net.bias[k] = bias[k]
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return root


def _bands(values: tuple[float, ...] = (-1000.0, -500.0, 0.0, 200.0)) -> np.ndarray:
    """(z, y, x) = (16, 20, 24) volume with four 6-voxel bands of constant HU along x."""
    arr = np.zeros((16, 20, 24), np.float32)
    for i, v in enumerate(values):
        arr[:, :, 6 * i:6 * (i + 1)] = v
    return arr


def _band_core(out: np.ndarray, i: int) -> np.ndarray:
    # the model works on a 2 mm grid: the 1.5 mm voxel at a band edge may fall either side
    return out[:, :, 6 * i + 1:6 * (i + 1) - 1]


# ------------------------------------------------------------------------------------------
# label mapping (no model run)


def test_wholebody_names_map_to_our_structures() -> None:
    """The 104 channel names of wholeBody_ct_segmentation map onto ours as documented."""
    names = ["background", "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta",
             "inferior_vena_cava", "portal_vein_and_splenic_vein", "pancreas", "adrenal_gland_right",
             "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
             "lung_middle_lobe_right", "lung_lower_lobe_right"]
    names += [f"vertebrae_L{i}" for i in range(5, 0, -1)] + [f"vertebrae_T{i}" for i in range(12, 0, -1)]
    names += [f"vertebrae_C{i}" for i in range(7, 0, -1)]
    names += ["esophagus", "trachea", "heart_myocardium", "heart_atrium_left", "heart_ventricle_left",
              "heart_atrium_right", "heart_ventricle_right", "pulmonary_artery", "brain", "iliac_artery_left",
              "iliac_artery_right", "iliac_vena_left", "iliac_vena_right", "small_bowel", "duodenum", "colon"]
    names += [f"rib_left_{i}" for i in range(1, 13)] + [f"rib_right_{i}" for i in range(1, 13)]
    names += ["humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left",
              "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right", "sacrum", "face",
              "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left", "gluteus_medius_right",
              "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left", "autochthon_right",
              "iliopsoas_left", "iliopsoas_right", "urinary_bladder"]
    assert len(names) == 105
    mapping = build_label_mapping(dict(enumerate(names)))
    ours = {e.their_name: e.our_name for e in mapping.entries}
    expected = {
        "lung_upper_lobe_left": "lung_left", "lung_middle_lobe_right": "lung_right", "vertebrae_L3": "vertebrae_lumbar",
        "vertebrae_T7": "vertebrae_thoracic", "vertebrae_C2": "vertebrae_cervical", "rib_left_5": "ribs",
        "rib_right_12": "ribs", "hip_left": "pelvis_bones", "urinary_bladder": "bladder", "heart_ventricle_left": "heart",
        "liver": "liver", "kidney_left": "kidney_left", "sacrum": "sacrum", "brain": "brain", "trachea": "trachea",
        "femur_right": "femoral_head_right", "background": "background",
    }
    for theirs, our in expected.items():
        assert ours[theirs] == our, theirs
    assert {"gluteus_maximus_left", "face", "colon", "esophagus"} <= set(mapping.unmapped)
    assert all(ours[n] == "body" for n in mapping.unmapped)
    # every one of our structures that TotalSegmentator v1 has is reached
    reached = set(ours.values())
    assert {"lung_left", "lung_right", "heart", "aorta", "liver", "spleen", "pancreas", "kidney_left", "kidney_right",
            "stomach", "bladder", "brain", "vertebrae_cervical", "vertebrae_thoracic", "vertebrae_lumbar", "sacrum",
            "ribs", "pelvis_bones", "trachea"} <= reached


def test_label_map_wins_and_rejects_unknown_names() -> None:
    mapping = build_label_mapping({0: "background", 4: "gallbladder", 7: None}, {"gallbladder": "liver", 7: "spleen"})
    lut = mapping.lookup()
    assert lut[4] == OURS["liver"].label and lut[7] == OURS["spleen"].label
    assert mapping.unmapped == []
    out = mapping.apply(np.array([0, 4, 7, 9]))  # 9 was never declared: inside the patient -> body
    assert out.tolist() == [0, OURS["liver"].label, OURS["spleen"].label, OURS["body"].label]
    with pytest.raises(ModelError, match="标签映射无效 / invalid label map"):
        build_label_mapping({1: "liver"}, {"livr": "liver"})
    with pytest.raises(ModelError, match="not one of our structures"):
        build_label_mapping({1: "liver"}, {"liver": "hepar"})
    # background words and label 0 drop a structure
    dropped = build_label_mapping({1: "table"}, {"table": "background"})
    assert dropped.lookup()[1] == 0


def test_names_file_targets_exist_in_our_label_set() -> None:
    table = load_name_table()
    targets = set(table.names.values()) | {t for _, t in table.patterns}
    assert targets <= set(OURS)


# ------------------------------------------------------------------------------------------
# MONAI bundle


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return write_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny_bundle")


def test_bundle_labels_land_where_predicted_in_input_geometry(tiny_bundle: Path) -> None:
    from radqc.models.byo.monai_bundle import MonaiBundleSegmenter

    seg = MonaiBundleSegmenter(tiny_bundle, device="cpu", body_fill=False)
    image = _image(_bands())
    out = seg.segment(image)
    _same_geometry(out, image)
    assert out.GetPixelID() == sitk.sitkUInt8
    arr = sitk.GetArrayFromImage(out)
    expected = [OURS["lung_left"].label, OURS["body"].label, 0, OURS["liver"].label]  # 3, 4 (unmapped), 0, 5
    for i, label in enumerate(expected):
        core = _band_core(arr, i)
        assert (core == label).all(), (i, np.unique(core, return_counts=True))
    # each band as a whole is at least 80% right (edges may move by one fine voxel)
    for i, label in enumerate(expected):
        assert (arr[:, :, 6 * i:6 * (i + 1)] == label).mean() > 0.8
    assert seg.last_run["unmapped"] == ["gallbladder"]
    assert set(seg.last_run["their_labels_present"]) == {0, 3, 4, 5}
    assert seg.name == "tiny test bundle" and seg.version == "0.0.1"


def test_bundle_runs_each_new_image_without_reloading(tiny_bundle: Path) -> None:
    from ignite.engine import Events
    from monai.handlers import CheckpointLoader

    from radqc.models.byo.monai_bundle import MonaiBundleSegmenter

    seg = MonaiBundleSegmenter(tiny_bundle, device="cpu", body_fill=False)
    first = sitk.GetArrayFromImage(seg.segment(_image(_bands())))
    network = seg._parser.get_parsed_content("network")
    evaluator = seg._parser.get_parsed_content("evaluator")
    loaders = [h for h, _, _ in evaluator._event_handlers.get(Events.STARTED, [])
               if isinstance(getattr(h, "__self__", h), CheckpointLoader)]
    assert loaders == []  # weights loaded once, the loader detached
    # the reversed bands: the second image really is read (not the first one's cached output)
    second = sitk.GetArrayFromImage(seg.segment(_image(_bands((200.0, 0.0, -500.0, -1000.0)))))
    assert seg._parser.get_parsed_content("network") is network
    assert (_band_core(second, 0) == OURS["liver"].label).all()
    assert (_band_core(second, 3) == OURS["lung_left"].label).all()
    assert (_band_core(first, 0) == OURS["lung_left"].label).all()


def test_bundle_keeps_stdout_clean(tiny_bundle: Path) -> None:
    """MONAI's module loggers write to the stdout of the moment they were imported; in a
    worker that imported monai before, their lines must still not reach stdout (--json)."""
    import subprocess

    script = (
        "import torch; torch.set_num_threads(1)\n"
        "import monai.data.image_writer  # binds its logger to sys.stdout now\n"
        "import numpy as np, SimpleITK as sitk\n"
        "from radqc.models.byo.monai_bundle import MonaiBundleSegmenter\n"
        f"seg = MonaiBundleSegmenter({str(tiny_bundle)!r}, device='cpu')\n"
        "seg.segment(sitk.GetImageFromArray(np.full((8, 8, 8), 200, np.float32)))\n"
        "print('done')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "done\n"
    assert "writing:" in proc.stderr


def test_bundle_label_map_and_body_fill(tiny_bundle: Path) -> None:
    from radqc.models.byo.monai_bundle import MonaiBundleSegmenter

    seg = MonaiBundleSegmenter(tiny_bundle, device="cpu", label_map={"gallbladder": "stomach", 5: "spleen"})
    arr = sitk.GetArrayFromImage(seg.segment(_image(_bands())))
    assert (_band_core(arr, 1) == OURS["stomach"].label).all()
    assert (_band_core(arr, 3) == OURS["spleen"].label).all()
    # body_fill (default): the HU 0 band is inside the patient, unlabelled by the model -> body
    assert (_band_core(arr, 2) == OURS["body"].label).all()
    assert seg.last_run["unmapped"] == []


def test_bundle_without_names_needs_label_map(tmp_path: Path) -> None:
    from radqc.models.byo.monai_bundle import MonaiBundleSegmenter

    root = write_tiny_bundle(tmp_path / "nameless", channels=None)
    with pytest.raises(ModelError, match="label_map"):
        MonaiBundleSegmenter(root)
    seg = MonaiBundleSegmenter(root, device="cpu", label_map={3: "lung_right", 5: "liver"}, body_fill=False)
    arr = sitk.GetArrayFromImage(seg.segment(_image(_bands())))
    assert (_band_core(arr, 0) == OURS["lung_right"].label).all()
    assert (_band_core(arr, 1) == OURS["body"].label).all()  # label 4: undeclared -> body


def test_bundle_errors_are_bilingual(tmp_path: Path, tiny_bundle: Path) -> None:
    from radqc.models.byo.monai_bundle import MonaiBundleSegmenter

    (tmp_path / "configs").mkdir()
    with pytest.raises(ModelError, match="不是 MONAI bundle 目录.* / not a MONAI bundle folder"):
        MonaiBundleSegmenter(tmp_path)
    seg = MonaiBundleSegmenter(tiny_bundle, device="cpu")
    with pytest.raises(ModelError, match="输入不是三维 CT 体数据 / the input is not a 3D CT volume"):
        seg.segment(sitk.Image(8, 8, sitk.sitkFloat32))


def test_wholebody_bundle_layout_runs(tmp_path: Path) -> None:
    """The wholeBody_ct_segmentation layout itself: SegResNet (105 outputs), its normalisation,
    the low-resolution branch picked by `displayable_configs#highres`, random (seeded) weights.
    Labels cannot be predicted, but the run must succeed and land in our label set and geometry."""
    from monai.networks.nets import SegResNet

    from radqc.models.byo.monai_bundle import MonaiBundleSegmenter

    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path / "wholeBody_ct_segmentation"
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    net_kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 105, "init_filters": 8,
                  "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "dropout_prob": 0.2}
    tail = [{"_target_": "NormalizeIntensityd", "keys": "@image_key", "nonzero": True},
            {"_target_": "ScaleIntensityd", "keys": "@image_key", "minv": -1.0, "maxv": 1.0}]
    cfg = _inference_config(
        {"_target_": "SegResNet", **net_kwargs}, tail,
        "$[1.5, 1.5, 1.5] if @displayable_configs#highres else [3.0, 3.0, 3.0]", [32, 32, 32],
        modelname="'model.pt' if @displayable_configs#highres else 'model_lowres.pt'",
        extra={"displayable_configs": {"highres": False, "sw_overlap": 0.25, "sw_batch_size": 1}},
    )
    (root / "configs" / "inference.json").write_text(json.dumps(cfg, indent=2))
    names = {0: "background", 5: "liver", 13: "lung_upper_lobe_left", 20: "vertebrae_L3", 104: "urinary_bladder"}
    channels = {i: names.get(i, f"structure_{i}") for i in range(105)}
    (root / "configs" / "metadata.json").write_text(json.dumps(_metadata(channels, "Whole body CT segmentation")))
    torch.save(SegResNet(**net_kwargs).state_dict(), root / "models" / "model_lowres.pt")

    seg = MonaiBundleSegmenter(root, device="cpu")
    rng = np.random.default_rng(0)
    image = _image(rng.normal(0, 300, size=(16, 20, 24)))
    out = seg.segment(image)
    _same_geometry(out, image)
    assert set(np.unique(sitk.GetArrayFromImage(out)).tolist()) <= {0} | {s.label for s in OURS.values()}
    assert seg.mapping.lookup()[13] == OURS["lung_left"].label
    assert "structure_50" in seg.mapping.unmapped


def test_bundle_info_hash_follows_the_files(tiny_bundle: Path, tmp_path: Path) -> None:
    import shutil

    from radqc.models.byo.monai_bundle import bundle_info

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    a = bundle_info(copy)
    assert a == {**a, "name": "tiny test bundle", "version": "0.0.1", "kind": "monai_bundle"}
    assert bundle_info(copy)["bundle_hash"] == a["bundle_hash"]
    (copy / "models" / "model.pt").write_bytes(b"swapped weights")
    assert bundle_info(copy)["bundle_hash"] != a["bundle_hash"]


# ------------------------------------------------------------------------------------------
# nnU-Net

nnunetv2 = pytest.importorskip("nnunetv2", reason="nnunetv2 is in the test extra")

NN_LABELS = {"background": 0, "lung_upper_lobe_right": 1, "urinary_bladder": 2, "gallbladder": 3}


def write_nnunet_folder(root: Path, reader: str = "SimpleITKIO", labels: dict[str, int] | None = None) -> Path:
    """A trained-model folder (dataset.json, plans.json, fold_0/checkpoint_final.pth) with a
    2-stage PlainConvUNet whose weights are set by hand.

    CT normalisation maps HU to HU/1000. The first encoder conv copies x (channel 0) and -x
    (channel 1) through their centre taps; instance norm + LeakyReLU keep "above the patch mean"
    positive in channel 0 and "below" in channel 1; the deeper stage is zero, the decoder conv
    passes the two skip channels on, and the 1x1x1 head scores label 2 (urinary_bladder) by
    ch0 - ch1 and label 1 (lung_upper_lobe_right) by ch1 - ch0. On a two-valued image the high
    voxels become bladder and the low ones lung, whatever the patch. ``labels`` renames the
    four outputs (same values) for a second, differently named part model."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    root.mkdir(parents=True)
    dataset = {"channel_names": {"0": "CT"}, "labels": labels or NN_LABELS, "numTraining": 1, "file_ending": ".nii.gz",
               "name": "Dataset999_Tiny"}
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]], "n_conv_per_stage": [1, 1],
            "n_conv_per_stage_decoder": [1], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    resample = "resample_data_or_seg_to_shape"
    configuration = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": [16, 16, 16], "median_image_size_in_voxels": [16, 16, 16], "spacing": [2.0, 2.0, 2.0],
        "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": resample, "resampling_fn_seg": resample, "resampling_fn_probabilities": resample,
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": arch, "batch_dice": False,
    }
    plans = {
        "dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [2.0, 2.0, 2.0], "original_median_shape_after_transp": [16, 16, 16],
        "image_reader_writer": reader, "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": configuration}, "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 1000.0, "mean": 0.0, "median": 0.0, "min": -1000.0, "percentile_00_5": -1000.0,
            "percentile_99_5": 1000.0, "std": 1000.0}},
    }
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    (root / "plans.json").write_text(json.dumps(plans, indent=2))
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                 1, len(NN_LABELS), allow_init=True, deep_supervision=False)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm3d):
                m.weight.fill_(1.0)
        first = net.encoder.stages[0][0].convs[0].conv
        first.weight[0, 0, 1, 1, 1] = 1.0
        first.weight[1, 0, 1, 1, 1] = -1.0
        decoder = net.decoder.stages[0].convs[0].conv  # inputs: 4 upsampled channels, then the 4 skip channels
        decoder.weight[0, 4, 1, 1, 1] = 1.0
        decoder.weight[1, 5, 1, 1, 1] = 1.0
        head = net.decoder.seg_layers[0]
        head.weight[1, 1] = 1.0
        head.weight[1, 0] = -1.0
        head.weight[2, 0] = 1.0
        head.weight[2, 1] = -1.0
        head.bias[0] = -10.0
        head.bias[3] = -10.0
    (root / "fold_0").mkdir()
    torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset},
                "inference_allowed_mirroring_axes": (0, 1, 2), "current_epoch": 1},
               root / "fold_0" / "checkpoint_final.pth")
    return root


def _corner_box() -> np.ndarray:
    """Low HU everywhere but a high-HU box in one corner: asymmetric on every axis, so any
    flipped or transposed axis on the way through nnU-Net shows."""
    arr = np.full((16, 20, 24), -800.0, np.float32)
    arr[8:, 10:, 12:] = 300.0
    return arr


@pytest.mark.parametrize("reader", ["SimpleITKIO", "NibabelIOWithReorient"])
def test_nnunet_predictor_runs_and_labels_map(tmp_path: Path, reader: str, capfd: pytest.CaptureFixture[str]) -> None:
    from radqc.models.byo.nnunet import NnUNetSegmenter

    torch.set_num_threads(1)
    root = write_nnunet_folder(tmp_path / "Dataset999_Tiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres", reader)
    seg = NnUNetSegmenter(root, device="cpu", body_fill=False)
    assert seg.folds == ["0"]
    image = _image(_corner_box())
    out = seg.segment(image)
    _same_geometry(out, image)
    arr = sitk.GetArrayFromImage(out)
    high = _corner_box() > 0
    assert (arr[high] == OURS["bladder"].label).all()
    assert (arr[~high] == OURS["lung_right"].label).all()
    assert seg.last_run["unmapped"] == ["gallbladder"]
    assert seg.name == "Dataset999_Tiny"
    assert seg.version == "nnUNetTrainer__nnUNetPlans__3d_fullres:folds=0"
    again = sitk.GetArrayFromImage(seg.segment(image))  # the predictor is reused
    assert (again == arr).all()
    assert capfd.readouterr().out == ""  # nnU-Net's prints go to stderr: `radqc ... --json` owns stdout


def test_nnunet_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radqc.models.byo.nnunet import NnUNetSegmenter

    root = write_nnunet_folder(tmp_path / "results")
    with pytest.raises(ModelError, match="不是 nnU-Net 训练结果目录.* / not an nnU-Net results folder"):
        NnUNetSegmenter(root, folds=[3])
    with pytest.raises(ModelError, match="nnU-Net results folder"):
        NnUNetSegmenter(tmp_path)
    # nnunetv2 missing: the adapter says what to install instead of a traceback
    monkeypatch.setitem(sys.modules, "nnunetv2.inference.predict_from_raw_data", None)
    seg = NnUNetSegmenter(root, device="cpu")
    with pytest.raises(ModelError, match=r"未安装 nnunetv2.*radqc-workbench\[nnunet\]"):
        seg.segment(_image(_corner_box()))


def test_nnunet_info_hash_and_region_labels(tmp_path: Path) -> None:
    from radqc.models.byo.nnunet import dataset_labels, nnunet_info

    root = write_nnunet_folder(tmp_path / "results")
    a = nnunet_info(root)
    (root / "fold_0" / "checkpoint_final.pth").write_bytes(b"other weights")
    assert nnunet_info(root)["bundle_hash"] != a["bundle_hash"]
    # region-trained (BraTS-style) dataset.json: the written values follow regions_class_order
    regions = {"labels": {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": [3]},
               "regions_class_order": [1, 2, 3]}
    assert dataset_labels(regions) == {0: "background", 1: "whole_tumor", 2: "tumor_core", 3: "enhancing_tumor"}


def test_nnunet_parts_merge_through_the_slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two part folders in one slot (TotalSegmentator v2 style): the first part's specific
    structure wins, another part's organ beats a part's `body`."""
    import os

    from radqc.models import slots
    from radqc.models.byo.common import MergedSegmenter

    torch.set_num_threads(1)
    # part B: low HU is "face" (unmapped -> body), high HU is liver; part A: low lung, high bladder
    b = write_nnunet_folder(tmp_path / "Dataset292_B" / "nnUNetTrainer__nnUNetPlans__3d_fullres",
                            labels={"background": 0, "face": 1, "liver": 2, "colon": 3})
    a = write_nnunet_folder(tmp_path / "Dataset291_A" / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    monkeypatch.setenv("RADQC_MODEL_CT_ORGANS", os.pathsep.join([str(b.parent), str(a.parent)]))
    monkeypatch.delenv("RADQC_MODELS_CONFIG", raising=False)
    monkeypatch.setenv("RADQC_HOME", str(tmp_path / "home"))
    slots.clear_cache()
    try:
        cfg = slots.slot_config("ct_organs")
        assert cfg.kind == "nnunet" and cfg.parts == (b.resolve(), a.resolve())
        model = slots.resolve("ct_organs")
        assert isinstance(model, MergedSegmenter) and all(p.body_fill is False for p in model.parts)
        arr = sitk.GetArrayFromImage(model.segment(_image(_corner_box())))
        high = _corner_box() > 0
        assert (arr[high] == OURS["liver"].label).all()
        assert (arr[~high] == OURS["lung_right"].label).all()
        assert model.last_run["unmapped"] == ["colon", "face", "gallbladder"]
        v = slots.slot_versions("ct_organs")
        assert v["name"] == "Dataset999_Tiny+Dataset999_Tiny" and len(v["parts"]) == 2
    finally:
        slots.clear_cache()
