"""Learned artifact detector (issue #7): per-series classical features -> 无/运动/设备/异物.

``data`` extracts features and per-series labels from generator sets, ``train`` fits a tiny
MLP per modality class (CT, MR, radiograph), ``export`` writes one ONNX file and ``infer``
serves it with onnxruntime (no torch at serving). The features are those of
``radqc.pipelines.image_qc.artifact``, so every learned decision has a measured evidence.
"""
