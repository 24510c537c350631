"""Learned series classifier over DICOM header facts (ONNX; trained on the synthetic generator).

* :mod:`.featurize` — SeriesHeader -> feature row (numpy; shared by training and serving).
* :mod:`radqc.pipelines.series.heads` — one softmax head per label field (shared with the fusion).
* :mod:`.data` — cached training/evaluation tables from ``radqc synth`` sets.
* :mod:`.network` / :mod:`.train` — the MLP (torch, training only) and the one-command
  retrain + ONNX export + registry entry.
* :mod:`.evaluate` — per-field, category and MR sequence-set accuracy of the fused classifier.

Serving needs only numpy and ONNX Runtime::

    model = SeriesHeaderModel.load()            # registry entry "series_header", sha256 checked
    probs = model.predict(headers)              # per series: field -> {value: probability}

The fusion with the header rules and the image model is
:class:`radqc.pipelines.series.classify.SeriesClassifier`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radqc.pipelines.series.features import SeriesHeader
from radqc.pipelines.series.heads import HEADS, slices

from .featurize import FEATURE_VERSION, Featurizer

#: rows per ONNX Runtime call
BATCH = 4096


class SeriesHeaderModel:
    """The ONNX header classifier: batched featurisation and inference."""

    name = "series_header"

    def __init__(self, session: Any, version: str = "?") -> None:
        self.session = session
        self.version = version
        self.featurizer = Featurizer()
        self._slices = [(f, a, b, HEADS[f]) for f, (a, b) in slices().items()]

    @classmethod
    def load(cls, path: str | Path | None = None) -> SeriesHeaderModel:
        """The registered model (weights verified against the registry), or an ONNX file at ``path``."""
        from radqc.models.runtime import session_for, session_for_path

        if path is not None:
            return cls(session_for_path(Path(path), ["CPUExecutionProvider"]), version=f"file:{Path(path).name}")
        from radqc.models.registry import get_model

        info = get_model(cls.name)
        fv = int(info.input.get("feature_version", FEATURE_VERSION))
        if fv != FEATURE_VERSION:
            raise RuntimeError(f"series_header weights use feature version {fv}, code has {FEATURE_VERSION}: retrain")
        return cls(session_for(info, ["CPUExecutionProvider"]), version=info.version)

    def predict_array(self, headers: Sequence[SeriesHeader]) -> np.ndarray:
        """Concatenated per-head probabilities, ``[len(headers), sum(head sizes)]``."""
        x = self.featurizer.transform(headers)
        outs = [self.session.run(None, {"input": x[i:i + BATCH]})[0] for i in range(0, len(x), BATCH)]
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def predict(self, headers: Sequence[SeriesHeader]) -> list[dict[str, dict[Any, float]]]:
        """Per series: field -> {value (None = not applicable): probability}."""
        if not headers:
            return []
        p = self.predict_array(headers).tolist()
        out = []
        for row in p:
            out.append({f: dict(zip(values, row[a:b], strict=True)) for f, a, b, values in self._slices})
        return out


__all__ = ["SeriesHeaderModel"]
