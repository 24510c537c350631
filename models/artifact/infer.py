"""Serving the artifact detector with ONNX Runtime (no torch).

    model = ArtifactModel.shared()            # None when weights are missing or refused
    probs = model.predict("CT", features)     # [none, motion, equipment, foreign_object]

The features are the dict the classical measure produced for the series, so the learned
decision and the evidence shown come from the same measurements.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from radqc.models.artifact.data import FEATURES, vector

log = logging.getLogger(__name__)

MODEL_NAME = "artifact"
_LOCK = threading.Lock()
_SHARED: dict[str, Any] = {}


class ArtifactModel:
    """The registered artifact network (weights sha256-checked by the registry)."""

    def __init__(self, session: Any, info: Any = None) -> None:
        self.session = session
        self.info = info
        self.input_name = session.get_inputs()[0].name

    @property
    def threshold(self) -> float:
        """The per-series probability limit chosen on validation (registry ``output.threshold``)."""
        out = getattr(self.info, "output", None) or {}
        return float(out.get("threshold", 0.5))

    def threshold_for(self, modality: str) -> float:
        """The limit of one modality (registry ``output.thresholds``; else the common ``threshold``).

        Why per modality: the exam takes the strictest of its series and an exam holds one
        modality, so each modality's limit is chosen on its own validation exams (1.2.0: the
        radiograph net was retrained while the CT and MR nets and their limit were kept)."""
        out = getattr(self.info, "output", None) or {}
        per = out.get("thresholds") or {}
        return float(per[modality]) if modality in per else self.threshold

    @property
    def version(self) -> str:
        return str(getattr(self.info, "version", "?"))

    @classmethod
    def load(cls, name: str = MODEL_NAME) -> ArtifactModel | None:
        """The model from the registry, or None with a logged reason."""
        try:
            from radqc.models.registry import get_model
            from radqc.models.runtime import session_for

            info = get_model(name)
            return cls(session_for(info), info)
        except Exception as exc:  # noqa: BLE001 - unregistered / missing weights: classical features decide
            log.info("artifact model unavailable (%s): classical thresholds decide", exc)
            return None

    @classmethod
    def shared(cls) -> ArtifactModel | None:
        """One model per process (loaded on first use; a failed load is not retried)."""
        with _LOCK:
            if "model" not in _SHARED:
                _SHARED["model"] = cls.load()
            return _SHARED["model"]  # type: ignore[no-any-return]

    def predict(self, modality: str, features: dict[str, float]) -> np.ndarray | None:
        """Class probabilities [none, motion, equipment, foreign_object], None for other modalities."""
        from radqc.models.artifact.train import pack

        if modality not in FEATURES:
            return None
        x = pack(modality, vector(modality, features)[None, :])
        logits = self.session.run(None, {self.input_name: x})[0][0]
        z = np.exp(logits - logits.max())
        return np.asarray(z / z.sum(), dtype=np.float64)
