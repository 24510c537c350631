"""Series classification and combined-exam splitting (issue #6).

Every series gets its standard category (role, derived type, plane, MR sequence, CT contrast
phase, with a confidence and the evidence), and every exam's series are assigned to the
ordered standard items; a long acquisition covering several items is cut into slabs. See
docs/series.md.
"""
