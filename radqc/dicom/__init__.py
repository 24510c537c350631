"""DICOM I/O: parsing and validation of received files, transcoding for the archive."""
