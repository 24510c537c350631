"""Defective variants of the real sample images with known truth (issue #7, real-derived accuracy).

See :mod:`radqc.datasets.real_variants.make` and ``variants.yaml``;
``python -m radqc.datasets.real_variants OUT`` writes them.
"""
