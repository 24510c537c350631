"""Weights a user brings: MONAI bundles and nnU-Net (TotalSegmentator-style) results folders.

Each adapter runs the foreign model through *its own* inference machinery (the bundle's
``configs/inference.json``, nnU-Net's ``nnUNetPredictor``), then maps its labels onto ours
(``models/labels/ct_organs.yaml``) and returns a label map in the input's exact geometry, so
the anatomy stage never knows whose weights it ran. Chosen by configuration only
(:mod:`radqc.models.slots`); torch, monai and nnunetv2 are imported inside the adapters'
methods, never at import time.
"""

from __future__ import annotations

__all__ = ["MonaiBundleSegmenter", "NnUNetSegmenter"]


def __getattr__(name: str) -> object:
    # Lazy: importing radqc.models.byo must stay cheap (the CLI lists slots without torch).
    if name == "MonaiBundleSegmenter":
        from radqc.models.byo.monai_bundle import MonaiBundleSegmenter

        return MonaiBundleSegmenter
    if name == "NnUNetSegmenter":
        from radqc.models.byo.nnunet import NnUNetSegmenter

        return NnUNetSegmenter
    raise AttributeError(name)
