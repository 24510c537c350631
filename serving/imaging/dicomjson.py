"""The DICOM JSON model (PS3.18 Annex F) for QIDO-RS and WADO-RS metadata, and identifier handling.

Two sources, one shape:

* QIDO-RS answers come from catalogue rows (no file is read for a search), built with
  :func:`element`;
* WADO-RS metadata comes from the stored DICOM header (the catalogue keeps no identifiers),
  converted by pydicom and then filtered by :func:`protect` for callers without
  ``patient.identity``: PatientName/PatientID become the patient pseudonym and the
  attributes in ``identifiers.yaml`` (and every private element) are dropped.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

IDENTIFIERS_FILE = Path(__file__).with_name("identifiers.yaml")
#: Binary elements longer than this are left out of metadata (PixelData gets a BulkDataURI).
BULK_THRESHOLD = 1024
PIXEL_DATA = "7FE00010"


def tag_hex(keyword: str) -> str:
    """``"PatientName"`` -> ``"00100010"``."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


def resolve_attribute(name: str) -> str | None:
    """A QIDO attribute given by keyword or 8-hex-digit tag -> the tag hex; None if unknown."""
    text = name.strip()
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.upper()
    tag = tag_for_keyword(text)
    return f"{tag:08X}" if tag is not None else None


@lru_cache(maxsize=1)
def _identifier_rules() -> tuple[frozenset[str], frozenset[str]]:
    raw = yaml.safe_load(IDENTIFIERS_FILE.read_text(encoding="utf-8")) or {}
    pseudo = frozenset(tag_hex(k) for k in raw.get("pseudonymise") or ())
    remove = frozenset(tag_hex(k) for k in raw.get("remove") or ())
    return pseudo, remove


def identifier_keywords() -> tuple[list[str], list[str]]:
    """(pseudonymised, removed) keywords, for documentation and tests."""
    raw = yaml.safe_load(IDENTIFIERS_FILE.read_text(encoding="utf-8")) or {}
    return list(raw.get("pseudonymise") or ()), list(raw.get("remove") or ())


def element(keyword: str, value: Any) -> tuple[str, dict[str, Any]] | None:
    """One DICOM JSON attribute from a keyword and a Python value (None/empty -> no Value)."""
    tag = tag_hex(keyword)
    vr = dictionary_VR(keyword)
    if vr in ("US or SS", "OB or OW"):
        vr = vr.split()[0]
    values = value if isinstance(value, (list, tuple)) else [value]
    values = [v for v in values if v is not None and v != ""]
    out: dict[str, Any] = {"vr": vr}
    if values:
        if vr == "PN":
            out["Value"] = [{"Alphabetic": str(v)} for v in values]
        elif vr in ("IS", "SL", "SS", "UL", "US"):
            out["Value"] = [int(v) for v in values]
        elif vr in ("DS", "FL", "FD"):
            out["Value"] = [float(v) for v in values]
        else:
            out["Value"] = [str(v) for v in values]
    return tag, out


def build(pairs: Iterable[tuple[str, Any]], include: set[str] | None = None) -> dict[str, Any]:
    """A DICOM JSON data set from (keyword, value) pairs; ``include`` limits to those tags (None: all)."""
    out: dict[str, Any] = {}
    for keyword, value in pairs:
        made = element(keyword, value)
        if made is None:
            continue
        tag, attr = made
        if include is not None and tag not in include:
            continue
        out[tag] = attr
    return dict(sorted(out.items()))


def dataset_to_json(ds: Dataset, pixel_uri: str | None = None) -> dict[str, Any]:
    """``ds`` as DICOM JSON; large binary elements left out, PixelData as a BulkDataURI."""

    def bulk(_elem: Any) -> str:
        return ""  # marker: dropped below (no bulk-data endpoint besides frames)

    raw: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=bulk,
                                          suppress_invalid_tags=True)
    out = {tag: attr for tag, attr in raw.items() if not (isinstance(attr, dict) and "BulkDataURI" in attr)}
    out.pop(PIXEL_DATA, None)
    if pixel_uri and ("PixelData" in ds or "Rows" in ds):
        out[PIXEL_DATA] = {"vr": "OW", "BulkDataURI": pixel_uri}
    return dict(sorted(out.items()))


def _is_private(tag: str) -> bool:
    try:
        return int(tag[:4], 16) % 2 == 1
    except ValueError:
        return True


def protect(attrs: dict[str, Any], *, identity: bool, pseudonym: str | None) -> dict[str, Any]:
    """``attrs`` as a caller may see it: unchanged with ``identity``; otherwise the patient's
    name and ID replaced by ``pseudonym``, identifying and private attributes removed."""
    if identity:
        return attrs
    pseudo_tags, remove_tags = _identifier_rules()
    out: dict[str, Any] = {}
    for tag, attr in attrs.items():
        if tag in remove_tags or _is_private(tag):
            continue
        if tag in pseudo_tags:
            vr = attr.get("vr", "LO") if isinstance(attr, dict) else "LO"
            value: Any = {"Alphabetic": pseudonym} if vr == "PN" else pseudonym
            out[tag] = {"vr": vr, "Value": [value]} if pseudonym else {"vr": vr}
            continue
        out[tag] = attr
    return out


def protect_dataset(ds: Dataset, *, pseudonym: str | None) -> Dataset:
    """A copy of ``ds`` for a download by a caller without ``patient.identity`` (same rules)."""
    out = copy.deepcopy(ds)
    pseudo_tags, remove_tags = _identifier_rules()
    out.remove_private_tags()
    for tag in remove_tags:
        keyword = keyword_for_tag(int(tag, 16))
        if keyword and keyword in out:
            delattr(out, keyword)
    for tag in pseudo_tags:
        keyword = keyword_for_tag(int(tag, 16))
        if keyword:
            setattr(out, keyword, pseudonym or "")
    return out
