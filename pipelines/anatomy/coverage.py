"""A series' z-coverage in anatomy words: "covers lung apex to 2 cm below the diaphragm dome".

Scan-range checks (was the ordered range imaged? too much above or below it?) need the
range in landmarks, not millimetres. The ends of the scan are described relative to the
landmarks *inside* it (those outside are null by contract): the top end relative to the
highest landmark, the bottom end relative to the lowest one; an end within
``at_within_mm`` of its landmark is "at" it, otherwise the distance is given in whole
centimetres. Without any landmark in range the body regions of the end slices are named
instead. Words and phrases come from ``vocabulary.yaml`` (Chinese and English).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

VOCABULARY_FILE = Path(__file__).with_name("vocabulary.yaml")


@functools.cache
def vocabulary() -> dict[str, Any]:
    return yaml.safe_load(VOCABULARY_FILE.read_text(encoding="utf-8"))


def _name(kind: str, key: str, lang: str) -> str:
    entry = vocabulary().get(kind, {}).get(key)
    return str(entry[lang]) if entry else key.replace("_", " ")


def _end(landmark: str, offset_mm: float, lang: str) -> str:
    vocab = vocabulary()
    name = _name("landmarks", landmark, lang)
    if abs(offset_mm) < float(vocab["at_within_mm"]):
        return str(vocab["phrases"]["at"][lang]).format(name=name)
    cm = max(1, round(abs(offset_mm) / 10.0))
    key = "above" if offset_mm > 0 else "below"
    return str(vocab["phrases"][key][lang]).format(name=name, cm=cm)


def describe_coverage(
    slice_z_mm: Sequence[float], landmarks: Mapping[str, float | None], regions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The scan's ends relative to landmarks, with ``text`` in ``zh`` and ``en``.

    ``slice_z_mm``: patient z (LPS, + head) of every slice; ``landmarks``: z in mm (None
    outside the scan); ``regions``: body region per slice from the body-region scorer, in the
    same order as ``slice_z_mm`` (used when no landmark is in range)."""
    if not len(slice_z_mm):
        raise ValueError("no slices")
    top, bottom = float(max(slice_z_mm)), float(min(slice_z_mm))
    inside = {k: float(v) for k, v in landmarks.items() if v is not None}
    out: dict[str, Any] = {
        "z_top_mm": round(top, 2), "z_bottom_mm": round(bottom, 2), "length_mm": round(top - bottom, 2),
        "landmarks_in_range": sorted(inside, key=lambda k: -inside[k]),
        "top": None, "bottom": None, "text": None,
    }
    phrases = vocabulary()["phrases"]
    if inside:
        highest = max(inside, key=lambda k: inside[k])
        lowest = min(inside, key=lambda k: inside[k])
        out["top"] = {"landmark": highest, "offset_mm": round(top - inside[highest], 1)}
        out["bottom"] = {"landmark": lowest, "offset_mm": round(bottom - inside[lowest], 1)}
        out["text"] = {
            lang: str(phrases["covers"][lang]).format(
                top=_end(highest, top - inside[highest], lang), bottom=_end(lowest, bottom - inside[lowest], lang))
            for lang in ("zh", "en")
        }
        return out
    if regions and len(regions) == len(slice_z_mm) and all(regions):
        z = list(slice_z_mm)
        head_end, foot_end = regions[z.index(max(z))], regions[z.index(min(z))]
        out["top"] = {"region": head_end}
        out["bottom"] = {"region": foot_end}
        key = "region" if head_end == foot_end else "regions"
        out["text"] = {
            lang: str(phrases[key][lang]).format(top=_name("regions", head_end, lang),
                                                 bottom=_name("regions", foot_end, lang))
            for lang in ("zh", "en")
        }
    return out
