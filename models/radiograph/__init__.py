"""Radiograph anatomy (``cxr_anatomy``): masks, landmarks and positioning measurements on DX/CR.

A small 2-D U-Net (MONAI, trained on the synthetic generator's projections, served as ONNX)
gives per-structure masks; :mod:`.classical` turns masks into landmarks and the numbers the
positioning checks need (rotation, scapula overlap, inspiration, costophrenic angles,
centring, L/R marker). Only :mod:`.infer` is needed to serve it; it imports no torch.
"""
