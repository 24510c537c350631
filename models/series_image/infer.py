"""Serving the series thumbnail network with ONNX Runtime (no torch).

    model = SeriesImageModel.load()               # None (reason logged) when weights are missing
    thumbs = np.stack([make_thumbnail(ds_list) for ds_list in series])
    probs = model.predict(thumbs, modalities)     # per series: field -> {value: probability}

The network has one softmax head per (modality group, field) (registry ``output.heads``);
a series gets the heads of its modality's group only, so a CT series is never given an MR
sequence. A series whose thumbnail is all zeros (pixels unusable, see
:func:`~radqc.models.series_image.thumbnail.make_thumbnail_ex`) or whose modality has no
group gets ``{}``: the image model abstains rather than guessing from a blank picture.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from radqc.models.series_image.heads import HeadTable, table_from_dict
from radqc.models.series_image.thumbnail import THUMB_SHAPE

log = logging.getLogger(__name__)

MODEL_NAME = "series_image"
#: Series per ONNX Runtime call (bounds memory for very large batches).
CHUNK = 256


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class SeriesImageModel:
    """The registered series thumbnail network (weights sha256-checked by the registry)."""

    def __init__(self, session: Any, heads: HeadTable, info: Any = None) -> None:
        self.session = session
        self.heads = heads
        self.info = info
        self.input_name = session.get_inputs()[0].name

    @property
    def version(self) -> str:
        """The registry version (recorded in stage manifests next to the label)."""
        return str(getattr(self.info, "version", "?"))

    @classmethod
    def load(cls, name: str = MODEL_NAME) -> SeriesImageModel | None:
        """The model from the registry, or None with a logged reason (unregistered, weights
        missing or not matching their sha256, onnxruntime unavailable)."""
        try:
            from radqc.models.registry import get_model
            from radqc.models.runtime import session_for

            info = get_model(name)
            heads = table_from_dict((info.output or {}).get("heads") or {})
            if not heads.heads:
                raise ValueError(f"registry entry {name!r} has no output.heads")
            shape = tuple((info.input or {}).get("shape") or THUMB_SHAPE)
            if shape != THUMB_SHAPE:
                raise ValueError(f"registry input shape {shape} != THUMB_SHAPE {THUMB_SHAPE}")
            return cls(session_for(info), heads, info)
        except Exception as exc:  # noqa: BLE001 - the classifier must run without the image model
            log.warning("series image model unavailable: %s", exc)
            return None

    def logits(self, thumbnails: np.ndarray) -> np.ndarray:
        """Raw concatenated logits (N, n_logits)."""
        x = np.ascontiguousarray(thumbnails, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != THUMB_SHAPE:
            raise ValueError(f"thumbnails of shape {x.shape[1:]}, expected {THUMB_SHAPE}")
        outs = [self.session.run(None, {self.input_name: x[i:i + CHUNK]})[0] for i in range(0, len(x), CHUNK)]
        return np.concatenate(outs, axis=0) if outs else np.zeros((0, self.heads.n_logits), np.float32)

    def predict(self, thumbnails: np.ndarray, modalities: Sequence[str | None]) -> list[dict[str, dict[str | None, float]]]:
        """Per series: field -> {value: probability} for the fields of its modality's group.

        ``thumbnails``: (N, *THUMB_SHAPE) from :func:`make_thumbnail`; ``modalities``: the
        series' DICOM Modality, same order. Probabilities of a field sum to 1; ``None`` as a
        value means "not applicable" (e.g. no contrast phase for a localizer)."""
        x = np.asarray(thumbnails, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if len(x) != len(modalities):
            raise ValueError(f"{len(x)} thumbnails but {len(modalities)} modalities")
        out: list[dict[str, dict[str | None, float]]] = [{} for _ in range(len(x))]
        groups = [self.heads.group_of(m) for m in modalities]
        usable = [i for i in range(len(x)) if groups[i] is not None and bool(np.any(x[i]))]
        if not usable:
            return out
        z = self.logits(x[usable])
        for row, i in enumerate(usable):
            for h in self.heads.for_group(groups[i]):
                p = _softmax(z[row, h.start:h.stop].astype(np.float64))
                out[i][h.field] = {v: float(pv) for v, pv in zip(h.values, p, strict=True)}
        return out
