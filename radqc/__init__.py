"""RadQC Workbench: the shared core (records, catalogue, object store, DICOM I/O, config, CLI).

Heavy libraries (torch, monai, ray, transformers) are never imported here, so that
``radqc --help`` and the API start fast.
"""

__version__ = "0.1.0"
