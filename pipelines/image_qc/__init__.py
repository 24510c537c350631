"""AI image QC scoring (issue #7): per exam item, per series, rolled up per exam.

Dimensions (range, positioning, artifact, centring, noise, sharpness, reconstruction, window,
sequences, dose) are measured first (anatomy landmarks, series categories, pixel statistics)
and learned where measuring is weak (artifacts); each finding carries a reason a doctor reads
and its evidence. The roll-up through the item's scoring standard (qc_rules/standards) gives
the score and grade. See docs/image-qc.md.
"""
