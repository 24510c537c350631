"""Slice body-region scores (body-part regression, after Yan et al. SSBR and BPReg).

* :mod:`.data` — the standard body coordinate, slice preprocessing shared by training and
  serving (numpy + SimpleITK only), and the synthetic training subjects.
* :mod:`.network` — the small 2D CNN (torch; training only).
* :mod:`.train` / :mod:`.export` — one command retrains from scratch and writes the ONNX file.
* :mod:`.infer` — :class:`~.infer.OnnxBodyRegionScorer`, served by ONNX Runtime without torch.
* :mod:`.evaluate` — held-out landmark errors and real-CT monotonicity.
"""
