"""Scoring any stage against ground truth: metrics, the evaluator registry, ``radqc eval``.

See docs/evaluation.md for the evaluator interface later stages plug into.
"""
