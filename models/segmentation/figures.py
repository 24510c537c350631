"""Overlay figures for the model card (``python -m radqc.models.segmentation.figures``).

Real images first: the InVesalius *Cranium* head CT (real pixels, 108 slices) from the
sample cache; then one held-out synthetic whole-body case. PNGs go to
``models/cards/figures/`` (small, a few hundred kB).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.registry import MODELS_DIR, get_model, load_label_set

FIG_DIR = MODELS_DIR / "cards" / "figures"


def _overlay(ax: Any, image: np.ndarray, labels: np.ndarray, title: str, aspect: float = 1.0) -> None:
    from matplotlib.colors import ListedColormap

    ax.imshow(image, cmap="gray", vmin=-300, vmax=500, origin="lower", aspect=aspect, interpolation="bilinear")
    colours = _colours()
    cmap = ListedColormap(colours)
    masked = np.ma.masked_where(labels <= 1, labels)  # body itself stays unpainted
    ax.imshow(masked, cmap=cmap, vmin=-0.5, vmax=len(colours) - 0.5, alpha=0.5, origin="lower", aspect=aspect,
              interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _colours() -> np.ndarray:
    """One distinct colour per label value (index = label)."""
    import matplotlib.pyplot as plt

    n = load_label_set("ct_organs").max_label + 1
    pool = np.vstack([plt.get_cmap("tab20")(np.arange(20)), plt.get_cmap("Dark2")(np.arange(8))])
    return pool[np.arange(n) % len(pool)]


def _legend(fig: Any, present: set[int]) -> None:
    import matplotlib.patches as mpatches

    colours = _colours()
    ls = load_label_set("ct_organs")
    handles = [mpatches.Patch(color=colours[s.label], label=s.name) for s in ls.structures
               if s.label in present and s.label > 1]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=6, frameon=False)


def real_head_ct(segmenter: Any, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    from radqc.samples import samples_dir

    folder = samples_dir() / "invesalius-cranium"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    labels = sitk.GetArrayFromImage(segmenter.segment(image))
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    sp = image.GetSpacing()
    z, y, x = hu.shape
    fig, axes = plt.subplots(1, 3, figsize=(10, 4))
    _overlay(axes[0], hu[z // 2], labels[z // 2], f"real head CT (Cranium), axial {z // 2}")
    _overlay(axes[1], hu[:, y // 2, :], labels[:, y // 2, :], "coronal", aspect=sp[2] / sp[0])
    _overlay(axes[2], hu[:, :, x // 2], labels[:, :, x // 2], "sagittal", aspect=sp[2] / sp[1])
    _legend(fig, set(np.unique(labels).tolist()))
    path = out / "ct_organs_real_cranium.png"
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def heldout_case(segmenter: Any, out: Path, seed: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    from radqc.models.segmentation.data import plan_case, render_native

    ls = load_label_set("ct_organs")
    plan = plan_case(seed)
    with tempfile.TemporaryDirectory() as tmp:
        image, truth, _ = render_native(plan, Path(tmp), ls)
    pred = sitk.GetArrayFromImage(segmenter.segment(image))
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    sp = image.GetSpacing()
    y = hu.shape[1] // 2 + 10
    fig, axes = plt.subplots(1, 2, figsize=(8, 6))
    _overlay(axes[0], hu[:, y, :], truth[:, y, :], f"held-out seed {seed}: generator truth", aspect=sp[2] / sp[0])
    _overlay(axes[1], hu[:, y, :], pred[:, y, :], "ct_organs_3mm prediction", aspect=sp[2] / sp[0])
    _legend(fig, set(np.unique(truth).tolist()))
    path = out / "ct_organs_heldout.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=FIG_DIR)
    ap.add_argument("--seed", type=int, default=9004)
    args = ap.parse_args()
    from radqc.models.segmentation.infer import OnnxCTSegmenter

    args.out.mkdir(parents=True, exist_ok=True)
    seg = OnnxCTSegmenter(get_model("ct_organs_3mm"))
    print(real_head_ct(seg, args.out))
    print(heldout_case(seg, args.out, args.seed))


if __name__ == "__main__":
    main()
