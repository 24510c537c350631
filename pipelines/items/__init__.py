"""Exam-item normalisation (issue #6): hospital item names -> standard items.

A deterministic parser first (slots: modality, device tier, parts, laterality, method,
post-processing, X-ray view; combined orders split), then fuzzy and embedding matching for
what it cannot resolve, then a per-hospital mapping confirmed by reviewers, which is used
first the next time. See docs/items.md.
"""
