"""The series thumbnail network: series classification from pixels (issue #6).

Headers lie (~10% of SeriesDescriptions are wrong), pixels do not: a small multi-head CNN
reads a 6-channel thumbnail of a series and says role, derived type, plane, contrast phase,
kernel class, MR sequence, radiograph view and region, so the header-rule classifier
(:mod:`radqc.pipelines.series`) can be overruled with evidence.

* :mod:`.thumbnail` — :func:`make_thumbnail`, :func:`pick_instances` (numpy + pydicom only).
* :mod:`.heads` — output heads per modality group (the vocabulary lives in the registry entry).
* :mod:`.data` — thumbnail caches of the synthetic corpus; :mod:`.train` / :mod:`.export` —
  training (torch) and ONNX export; :mod:`.infer` — :class:`SeriesImageModel` (ONNX Runtime).
"""

from radqc.models.series_image.infer import SeriesImageModel
from radqc.models.series_image.thumbnail import (
    THUMB_SHAPE,
    Thumbnail,
    make_thumbnail,
    make_thumbnail_ex,
    pick_instances,
    thumbnail_from_frames,
)

__all__ = ["THUMB_SHAPE", "SeriesImageModel", "Thumbnail", "make_thumbnail", "make_thumbnail_ex",
           "pick_instances", "thumbnail_from_frames"]
