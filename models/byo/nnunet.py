"""An nnU-Net v2 results folder (TotalSegmentator's weights are such folders) as our ``ct_organs`` segmenter.

Runs nnU-Net's own ``nnUNetPredictor`` (``initialize_from_trained_model_folder``, then
``predict_single_npy_array``), so its preprocessing (resampling to the plans' spacing, CT
normalisation with the dataset's intensity statistics), sliding window, test-time mirroring and
resampling back are exactly what the model was trained with. The predictor is built once per
segmenter and reused for every image.

The image reaches nnU-Net the way its plans expect: with the plans' ``image_reader_writer``
``SimpleITKIO`` (nnU-Net's default) the array goes straight in, in SimpleITK's (z, y, x) order
with the spacing reversed to match; with any other reader (TotalSegmentator's
``NibabelIOWithReorient``) the image is written to a temporary NIfTI, read back by that reader
and the prediction written by it, so orientation handling stays nnU-Net's.

Labels: ``dataset.json`` ``labels`` (name -> value, or name -> list of values for
region-trained models with ``regions_class_order``) are mapped onto ours like a bundle's.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radqc.models.byo.common import (
    OUR_LABEL_SET,
    LabelMapping,
    build_label_mapping,
    byo_error,
    check_volume,
    files_hash,
    finish,
    resample_labels_like,
    stdout_to_stderr,
)
from radqc.models.registry import LabelSet, load_label_set

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

CHECKPOINT = "checkpoint_final.pth"
#: Readers whose array order is SimpleITK's: the image can be handed over without a file.
DIRECT_READERS = frozenset({"SimpleITKIO"})


def is_nnunet_folder(path: Path) -> bool:
    """``dataset.json`` + ``plans.json`` + at least one ``fold_*`` folder (nnU-Net v2 results layout)."""
    return (
        (path / "dataset.json").is_file()
        and (path / "plans.json").is_file()
        and any(p.is_dir() for p in path.glob("fold_*"))
    )


def available_folds(path: Path, checkpoint: str = CHECKPOINT) -> list[str]:
    """Folds that hold ``checkpoint`` (``"0"``..``"4"`` or ``"all"``), in nnU-Net's order."""
    folds = [p.name[len("fold_"):] for p in Path(path).glob("fold_*") if (p / checkpoint).is_file()]
    return sorted(folds, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))


def _folds(path: Path, folds: Sequence[int | str] | int | str | None, checkpoint: str) -> list[str]:
    if folds is None:
        chosen = available_folds(path, checkpoint)
    else:
        chosen = [str(f) for f in ([folds] if isinstance(folds, (int, str)) else folds)]
    missing = [f for f in chosen if not (path / f"fold_{f}" / checkpoint).is_file()]
    if not chosen or missing:
        raise byo_error("nnunet_layout", f"{path}: no fold_{'/'.join(missing) or '*'}/{checkpoint}")
    return chosen


def dataset_labels(dataset: Mapping[str, Any]) -> dict[int, str | None]:
    """Output value -> name from ``dataset.json`` (value lists = regions, numbered by
    ``regions_class_order`` as nnU-Net's label manager writes them)."""
    labels = dataset.get("labels") or {}
    order = list(dataset.get("regions_class_order") or [])
    out: dict[int, str | None] = {}
    region_index = 0
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            if name == "background" or value in ([0], (0,)):
                continue
            if region_index >= len(order):
                raise byo_error("nnunet_layout", "region labels without a matching regions_class_order")
            out[int(order[region_index])] = str(name)
            region_index += 1
        else:
            out[int(value)] = str(name)
    return out


def declared_labels(path: Path | str) -> dict[int, str | None]:
    """The folder's output value -> name (from dataset.json), without importing nnunetv2."""
    return dataset_labels(_load_json(Path(path) / "dataset.json"))


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise byo_error("nnunet_layout", f"{path}: {exc}") from exc


def nnunet_info(path: Path | str, folds: Sequence[int | str] | int | str | None = None,
                checkpoint: str = CHECKPOINT) -> dict[str, Any]:
    """Name, version and a hash of dataset.json, plans.json and the used checkpoints — without torch."""
    root = Path(path).resolve()
    if not is_nnunet_folder(root):
        raise byo_error("nnunet_layout", str(root))
    dataset = _load_json(root / "dataset.json")
    used = _folds(root, folds, checkpoint)
    files = [root / "dataset.json", root / "plans.json"] + [root / f"fold_{f}" / checkpoint for f in used]
    plans = _load_json(root / "plans.json")
    dataset_name = str(plans.get("dataset_name") or dataset.get("name") or root.parent.name)
    return {
        "kind": "nnunet",
        "name": dataset_name,
        # the results folder is named trainer__plans__configuration: that is the model's identity
        "version": f"{root.name}:folds={','.join(used)}",
        "bundle_hash": files_hash(root, files),
        "path": str(root),
    }


class NnUNetSegmenter:
    """:class:`radqc.models.interfaces.Segmenter` running an nnU-Net v2 trained-model folder.

    Parameters
    ----------
    path:
        The trained-model folder (``<trainer>__<plans>__<configuration>``: dataset.json,
        plans.json, fold_N/checkpoint_final.pth).
    folds:
        Folds to ensemble; None = every fold that has the checkpoint (nnU-Net's default).
    label_map:
        Their value or name -> our structure name (or ``background``); wins over the names file.
    device:
        ``"cpu"``/``"cuda"``; None = CUDA when torch sees one.
    use_mirroring:
        nnU-Net's test-time mirroring (on by default in nnU-Net; 8x the work on 3D).
    tile_step_size:
        Sliding-window step as a fraction of the patch (nnU-Net's default 0.5).
    """

    def __init__(
        self,
        path: str | Path,
        folds: Sequence[int | str] | int | str | None = None,
        label_map: Mapping[Any, Any] | None = None,
        device: str | None = None,
        checkpoint: str = CHECKPOINT,
        use_mirroring: bool = True,
        tile_step_size: float = 0.5,
        body_fill: bool = True,
        name: str | None = None,
    ) -> None:
        root = Path(path).expanduser().resolve()
        if not root.is_dir() or not is_nnunet_folder(root):
            raise byo_error("nnunet_layout", str(root))
        self.path = root
        self.checkpoint = checkpoint
        self.folds = _folds(root, folds, checkpoint)
        info = nnunet_info(root, self.folds, checkpoint)
        self.name = name or info["name"]
        self.version = info["version"]
        self.bundle_hash = info["bundle_hash"]
        self.dataset = _load_json(root / "dataset.json")
        self.plans = _load_json(root / "plans.json")
        self.reader = str(self.plans.get("image_reader_writer") or "SimpleITKIO")
        channels = dataset_labels(self.dataset)
        if not channels and not label_map:
            raise byo_error("no_labels", f"{root / 'dataset.json'} has no labels")
        self.mapping: LabelMapping = build_label_mapping(channels, label_map)
        self.device = device
        self.use_mirroring = use_mirroring
        self.tile_step_size = tile_step_size
        self.body_fill = body_fill
        self.last_run: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._predictor: Any = None

    @property
    def label_set(self) -> LabelSet:
        return load_label_set(OUR_LABEL_SET)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "nnunet", "name": self.name, "version": self.version, "bundle_hash": self.bundle_hash}

    def _predictor_once(self) -> Any:
        if self._predictor is not None:
            return self._predictor
        try:
            with stdout_to_stderr():
                import torch
                from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        except ImportError as exc:
            raise byo_error("nnunet_missing", str(exc)) from exc
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            with stdout_to_stderr():
                predictor = nnUNetPredictor(
                    tile_step_size=self.tile_step_size,
                    use_gaussian=True,
                    use_mirroring=self.use_mirroring,
                    perform_everything_on_device=device.type == "cuda",
                    device=device,
                    verbose=False,
                    verbose_preprocessing=False,
                    allow_tqdm=False,
                )
                predictor.initialize_from_trained_model_folder(
                    str(self.path), use_folds=tuple(int(f) if f.isdigit() else f for f in self.folds),
                    checkpoint_name=self.checkpoint,
                )
        except Exception as exc:  # noqa: BLE001  (their folder, their error: say which)
            raise byo_error("nnunet_failed", f"loading {self.path}: {type(exc).__name__}: {exc}") from exc
        self._predictor = predictor
        return predictor

    def _predict_direct(self, predictor: Any, image: sitk.Image) -> sitk.Image:
        import numpy as np
        import SimpleITK as sitk

        data = sitk.GetArrayFromImage(image).astype(np.float32)[None]  # (c, z, y, x) as SimpleITKIO
        props = {"spacing": [float(s) for s in image.GetSpacing()[::-1]]}
        seg = predictor.predict_single_npy_array(data, props, None, None, False)
        out = sitk.GetImageFromArray(np.asarray(seg).astype(np.uint16))
        out.CopyInformation(image)
        return out

    def _predict_via_reader(self, predictor: Any, image: sitk.Image) -> sitk.Image:
        import SimpleITK as sitk

        rw_class = predictor.plans_manager.image_reader_writer_class
        rw = rw_class()
        workdir = Path(tempfile.mkdtemp(prefix="radqc-nnunet-"))
        try:
            endings = list(getattr(rw, "supported_file_endings", []) or [])
            # uncompressed NIfTI when the reader takes it (gzip costs seconds on a full CT)
            ending = next((e for e in (".nii", ".nii.gz") if not endings or e in endings), endings[0])
            in_file = workdir / f"image_0000{ending}"
            sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), str(in_file))
            data, props = rw.read_images([str(in_file)])
            seg = predictor.predict_single_npy_array(data, props, None, None, False)
            out_file = workdir / f"seg{ending}"
            rw.write_seg(seg, str(out_file), props)
            return sitk.ReadImage(str(out_file))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def segment(self, image: sitk.Image) -> sitk.Image:
        """Our uint8 label map in ``image``'s geometry (size, origin, spacing, direction)."""
        import numpy as np
        import SimpleITK as sitk

        check_volume(image)
        started = time.perf_counter()
        with self._lock:
            predictor = self._predictor_once()
            try:
                with stdout_to_stderr():
                    if self.reader in DIRECT_READERS:
                        their = self._predict_direct(predictor, image)
                    else:
                        their = self._predict_via_reader(predictor, image)
            except Exception as exc:  # noqa: BLE001
                raise byo_error("nnunet_failed", f"{type(exc).__name__}: {exc}") from exc
        on_grid = resample_labels_like(their, image)
        out = finish(on_grid, image, self.mapping, self.body_fill)
        self.last_run = {
            "seconds": round(time.perf_counter() - started, 3),
            "reader": self.reader,
            "folds": self.folds,
            "their_labels_present": [int(v) for v in np.unique(sitk.GetArrayViewFromImage(on_grid))],
            **self.mapping.to_dict(),
        }
        return out
