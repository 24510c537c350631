"""One undecodable instance costs the artifact stage that slice, not the whole series."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from radqc.dicom import volume as volume_mod
from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc.types import SeriesImages


def _series(n: int) -> SeriesImages:
    datasets = [SimpleNamespace(k=i, get=lambda key, default=None: {"RescaleSlope": 1.0, "RescaleIntercept": -1024.0,
                                                                        "SamplesPerPixel": 1}.get(key, default))
                for i in range(n)]

    def no_volume() -> Any:
        raise ValueError("not a volume")

    header = SimpleNamespace(series_uid="1.2.3", modality="CT")
    return SeriesImages(header=header, label=None, datasets=lambda: datasets, volume=no_volume, radiograph=None)


def test_a_truncated_instance_is_skipped_and_the_rest_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def decode(ds: Any) -> np.ndarray:
        if ds.k == 2:
            raise EOFError("End of file reached before delimiter (FFFE,E0DD) found")
        return np.full((4, 4), 1024 + 10 * ds.k, dtype=np.int16)

    monkeypatch.setattr(volume_mod, "decode", decode)
    slices, idx, first = art._slices(_series(5), max_slices=10, use_volume=True)
    assert idx == [0, 1, 3, 4]  # slice 2 is the truncated file; its neighbours keep their indices
    assert [float(s[0, 0]) for s in slices] == [0.0, 10.0, 30.0, 40.0]  # rescaled to HU
    assert first is not None and first.k == 0


def test_a_series_with_no_decodable_instance_still_has_no_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    def decode(ds: Any) -> np.ndarray:
        raise EOFError("truncated")

    monkeypatch.setattr(volume_mod, "decode", decode)
    slices, idx, _ = art._slices(_series(3), max_slices=10)
    assert slices == [] and idx == []  # the caller reports "no pixel data" for the series
