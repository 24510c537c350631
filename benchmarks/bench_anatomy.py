"""Anatomy engine: CT organ segmentation, body-region scores and radiograph anatomy.

Targets (issue 5): a 512² × 300 CT segmented at 3 mm in <= 30 s on 2 CPU cores with peak RAM
<= 4 GB; body-region scores for every slice <= 3 s. Peer, in the same run: the network of
MONAI's ``wholeBody_ct_segmentation`` bundle (SegResNet, init_filters 32, blocks_down
(1, 2, 2, 4), blocks_up (1, 1, 1), 105 outputs; random weights — only time and memory are
compared) on the same resampled 3-mm input with MONAI's ``sliding_window_inference``
(96³ windows, overlap 0.25). Each measurement runs in a fresh process so that its peak RSS
is its own (the input volume, already decoded, is handed over as a NIfTI file).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

N_SLICES = 300


def _make_ct(work: Path) -> Path:
    """A synthetic chest CT, 512² × ~300 slices, decoded and written as NIfTI (input of every run)."""
    import SimpleITK as sitk

    from radqc.models.registry import load_label_set
    from radqc.models.segmentation.data import CasePlan, render_native

    plan = CasePlan(seed=9999, regions=("chest", "abdomen"), phase="portal", sex="M", age=55, vendor="GE",
                    thickness_mm=1.25, defect=None)
    image, _, _ = render_native(plan, work, load_label_set("ct_organs"))
    size = image.GetSize()
    if size[2] > N_SLICES:  # keep exactly N_SLICES slices from the top
        image = image[:, :, size[2] - N_SLICES:]
    path = work / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def _child(kind: str, path: str, queue: Any) -> None:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import numpy as np
    import SimpleITK as sitk

    image = sitk.ReadImage(path)
    out: dict[str, Any] = {"shape": list(image.GetSize())}
    if kind == "ours":
        from radqc.models.registry import get_model
        from radqc.models.segmentation.infer import OnnxCTSegmenter

        t0 = time.perf_counter()
        seg = OnnxCTSegmenter(get_model("ct_organs_3mm"))
        out["load_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        labels = seg.segment(image)
        out["seconds"] = time.perf_counter() - t1
        out["labels"] = int(np.unique(sitk.GetArrayViewFromImage(labels)).size)
        t2 = time.perf_counter()
        seg.segment(image)
        out["seconds_second_exam"] = time.perf_counter() - t2
    elif kind == "monai":
        import torch
        from monai.inferers import sliding_window_inference
        from monai.networks.nets import SegResNet

        from radqc.models.segmentation.preprocess import model_grid, normalise_hu, resample_image_to

        torch.set_num_threads(2)
        torch.manual_seed(0)
        net = SegResNet(spatial_dims=3, in_channels=1, out_channels=105, init_filters=32, blocks_down=(1, 2, 2, 4),
                        blocks_up=(1, 1, 1), dropout_prob=0.2).eval()
        t1 = time.perf_counter()
        ref = model_grid(image, 3.0)
        x = normalise_hu(sitk.GetArrayFromImage(resample_image_to(image, ref)))
        with torch.no_grad():
            logits = sliding_window_inference(torch.from_numpy(x)[None, None], (96, 96, 96), 4, net, overlap=0.25)
            labels = logits.argmax(1)[0].numpy().astype(np.uint8)
        coarse = sitk.GetImageFromArray(labels)
        coarse.CopyInformation(ref)
        sitk.Resample(coarse, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        out["seconds"] = time.perf_counter() - t1
    elif kind == "body_region":
        from radqc.models.slots import resolve

        scorer = resolve("body_region")
        t1 = time.perf_counter()
        result = scorer.score(image)
        out["seconds"] = time.perf_counter() - t1
        out["landmarks"] = {k: v for k, v in result.landmarks.items() if v is not None}
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(out)


def _measure(kind: str, path: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(kind, str(path), q))
    p.start()
    p.join()
    if p.exitcode != 0:
        return {"error": f"exit code {p.exitcode}"}
    return dict(q.get())


def _radiograph(work: Path) -> dict[str, Any]:
    import numpy as np
    import pydicom

    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec
    from radqc.models.slots import resolve

    res = render_exam(ImagingSpec(exam_key="DX1", seed=3, modality="DX", regions=["chest"], size="full"), work)
    f = work / res.series[0].files[0]
    ds = pydicom.dcmread(f)
    px = ds.pixel_array.astype(np.float32)
    analyser = resolve("radiograph_anatomy")
    spacing = tuple(float(v) for v in getattr(ds, "PixelSpacing", getattr(ds, "ImagerPixelSpacing", [0.15, 0.15])))
    analyser.analyse(px, spacing, "PA")  # warm-up: session creation
    t0 = time.perf_counter()
    analyser.analyse(px, spacing, "PA")
    return {"shape": list(px.shape), "seconds": time.perf_counter() - t0}


def run(quick: bool = False) -> str:
    work = Path(tempfile.mkdtemp(prefix="bench_anatomy_"))
    try:
        path = _make_ct(work)
        ours = _measure("ours", path)
        monai = _measure("monai", path) if not quick else {}
        body = _measure("body_region", path)
        try:
            dx = _radiograph(work / "dx")
        except Exception as exc:  # noqa: BLE001 - recorded, the other rows still count
            dx = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    shape = "×".join(str(v) for v in ours.get("shape", []))
    lines = [f"Input: synthetic chest+abdomen CT {shape} voxels (decoded; DICOM decode is measured by the ingest "
             "benchmark), 2 CPU threads, ONNX Runtime CPU provider.", "",
             "| run | seconds | peak RSS (MB) | notes |", "| --- | --- | --- | --- |"]

    def row(name: str, r: dict[str, Any], note: str = "") -> None:
        if "error" in r:
            lines.append(f"| {name} | — | — | failed: {r['error']} |")
        elif r:
            lines.append(f"| {name} | {r['seconds']:.2f} | {r['maxrss_mb']:.0f} | {note} |")

    row("RadQC ct_organs_3mm, full segmentation at 3 mm (resample, 2.5-D slice-stack inference, smooth upsampling to the source grid)", ours,
        f"model load {ours.get('load_s', 0):.2f} s once per worker; a second exam in the same process "
        f"{ours.get('seconds_second_exam', 0):.2f} s")
    row("MONAI wholeBody_ct_segmentation network (SegResNet, random weights), same input", monai, "torch, 2 threads")
    if ours.get("seconds") and monai.get("seconds"):
        lines += ["", f"Ratio RadQC / MONAI SegResNet: time {ours['seconds'] / monai['seconds']:.2f}×, "
                      f"peak memory {ours['maxrss_mb'] / monai['maxrss_mb']:.2f}×."]
    lines += ["", "| body-region scores | seconds | peak RSS (MB) | landmarks found |", "| --- | --- | --- | --- |"]
    if "error" in body:
        lines.append(f"| all {ours.get('shape', [0, 0, 0])[2]} slices | — | — | failed: {body['error']} |")
    else:
        lines.append(f"| all {body['shape'][2]} slices | {body['seconds']:.2f} | {body['maxrss_mb']:.0f} | "
                     f"{json.dumps(body.get('landmarks', {}))} |")
    lines += ["", "| radiograph anatomy | seconds |", "| --- | --- |"]
    lines.append(f"| {dx.get('shape')} chest PA | {dx['seconds']:.2f} |" if "seconds" in dx else f"| chest PA | failed: {dx.get('error')} |")
    lines += ["", "Targets (issue 5): segmentation <= 30 s and <= 4 GB; body-region scores <= 3 s.",
              "No GPU machine was lent to this session, so no GPU numbers are recorded yet.",
              "The machine is shared by parallel sessions; times vary with their load."]
    return "\n".join(lines)
