"""Renders ImagingSpec into DICOM: CT/MR phantoms, radiograph projections, image defects."""
