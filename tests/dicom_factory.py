"""Small, valid DICOM series written to disk for tests (new UIDs each call)."""

from __future__ import annotations

from pathlib import Path

from radqc.dicom.factory import ct_series_datasets


def ct_series(
    folder: Path,
    n_slices: int = 10,
    size: int = 32,
    spacing_mm: float = 2.5,
    study_uid: str | None = None,
    accession: str = "ACC0001",
    patient_id: str = "PID0001",
    seed: int = 0,
) -> list[Path]:
    """Write an axial CT series (int16 HU) and return the file paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    datasets = ct_series_datasets(
        n_slices, size=size, spacing_mm=spacing_mm, study_uid=study_uid, seed=seed,
        accession=accession, patient_id=patient_id, series_number=2,
    )
    for i, ds in enumerate(datasets):
        path = folder / f"CT{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
