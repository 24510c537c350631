"""Serving the artifact detector with ONNX Runtime (no torch).

    model = ArtifactModel.shared()            # None when weights are missing or refused
    probs = model.predict("CT", features)     # [none, motion, equipment, foreign_object]

The features are the dict the classical measure produced for the series, so the learned
decision and the evidence shown come from the same measurements.
"""

from __future__ import annotations

import numpy as np

from radqc.models.artifact.data import FEATURES, vector
from radqc.models.runtime import RegisteredModel

MODEL_NAME = "artifact"


class ArtifactModel(RegisteredModel):
    """The registered artifact network (weights sha256-checked by the registry)."""

    MODEL_NAME = MODEL_NAME

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

    def predict(self, modality: str, features: dict[str, float]) -> np.ndarray | None:
        """Class probabilities [none, motion, equipment, foreign_object], None for other modalities."""
        from radqc.models.artifact.train import pack

        if modality not in FEATURES:
            return None
        x = pack(modality, vector(modality, features)[None, :])
        logits = self.session.run(None, {self.input_name: x})[0][0]
        z = np.exp(logits - logits.max())
        return np.asarray(z / z.sum(), dtype=np.float64)
