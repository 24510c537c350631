"""Built-in functions rule expressions may call (CONTRACT §3).

``FUNCTIONS`` maps the bare name used in an expression to a pure, fast, None-safe Python
function; the engine exposes nothing else. Each function's docstring says what it returns
and how it treats a missing value. Vocabularies (anatomy, cues, sex terms, critical values,
window presets, kernel names, item keywords) live in ``qc_rules/lexicons/*.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from radqc.qc_rules.functions import basic, dicom, report


def _set(*values: Any) -> list[Any]:
    """A list of the distinct non-None arguments, sorted (for small membership tests)."""
    return sorted({v for v in values if v is not None}, key=str)


def lower(x: Any) -> str | None:
    """Lower-cased text; None for None."""
    return None if x is None else str(x).lower()


def upper(x: Any) -> str | None:
    """Upper-cased, trimmed text; None for None."""
    return None if x is None else str(x).strip().upper()


def abs_(x: Any) -> float | None:
    """|x| for a number; None for None or a non-number."""
    n = basic.to_number(x)
    return None if n is None else abs(n)


def min_(*values: Any) -> Any:
    """The smallest non-None argument (or of one list argument); None when there is none."""
    items = list(values[0]) if len(values) == 1 and isinstance(values[0], (list, tuple)) else list(values)
    items = [v for v in items if v is not None]
    return min(items) if items else None


def max_(*values: Any) -> Any:
    """The largest non-None argument (or of one list argument); None when there is none."""
    items = list(values[0]) if len(values) == 1 and isinstance(values[0], (list, tuple)) else list(values)
    items = [v for v in items if v is not None]
    return max(items) if items else None


def intersects(a: Any, b: Any) -> bool:
    """True when two lists share an element (False when either is empty or None)."""
    return bool(set(a or []) & set(b or []))


def subset(a: Any, b: Any) -> bool:
    """True when every element of list ``a`` is in list ``b`` (True for empty ``a``)."""
    return set(a or []) <= set(b or [])


def lookup(key: Any, keys: Any, values: Any, default: Any = None) -> Any:
    """``values[i]`` where ``keys[i] == key`` (a per-modality table in params), else ``default``."""
    if key is None or not keys or not values:
        return default
    for k, v in zip(keys, values, strict=False):
        if k == key:
            return v
    return default


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # general
    "is_blank": basic.is_blank,
    "length": basic.length,
    "matches": basic.matches,
    "contains": basic.contains,
    "coalesce": basic.coalesce,
    "join": basic.join,
    "to_number": basic.to_number,
    "has_duplicates": basic.has_duplicates,
    "pluck": basic.pluck,
    "normalise_text": basic.normalise_text,
    "has_fullwidth": basic.has_fullwidth,
    "lower": lower,
    "upper": upper,
    "abs": abs_,
    "min": min_,
    "max": max_,
    "distinct": _set,
    "intersects": intersects,
    "subset": subset,
    "lookup": lookup,
    # identity and codes
    "normalise_sex": basic.normalise_sex,
    "sex_code_valid": basic.sex_code_valid,
    "id_number_valid": basic.id_number_valid,
    "id_checksum_ok": basic.id_checksum_ok,
    "id_birth_date": basic.id_birth_date,
    "id_sex": basic.id_sex,
    "mobile_valid": basic.mobile_valid,
    "landline_valid": basic.landline_valid,
    "uscc_valid": basic.uscc_valid,
    "org_code_valid": basic.org_code_valid,
    "institution_code_valid": basic.institution_code_valid,
    "index_string_valid": basic.index_string_valid,
    "index_string_parts": basic.index_string_parts,
    "index_part": basic.index_part,
    "index_datetime": basic.index_datetime,
    "modality_group": basic.modality_group,
    "modality_code_valid": basic.modality_code_valid,
    # times
    "is_time": basic.is_time,
    "is_date": basic.is_date,
    "minutes_between": basic.minutes_between,
    "hours_between": basic.hours_between,
    "to_date": basic.to_date,
    "age_years": basic.age_years,
    "parse_age": basic.parse_age,
    # report text
    "sections": report.sections,
    "section_text": report.section_text,
    "body": report.body,
    "sentences": report.sentences,
    "report_parts": report.body_parts,
    "anatomy_terms": report.anatomy_terms,
    "negated_spans": report.negated_spans,
    "is_negated": report.is_negated,
    "sentence_parts": report.sentence_parts,
    "parts_outside": report.parts_outside,
    "sentences_outside": report.sentences_outside,
    "parts_missing": report.parts_missing,
    "lateralities": report.lateralities,
    "part_sides": report.part_sides,
    "side_conflicts": report.side_conflicts,
    "item_body_parts": report.item_body_parts,
    "item_sides": report.item_sides,
    "item_lateralities": report.item_lateralities,
    "item_modalities": report.item_modalities,
    "lateral_item_parts": report.lateral_item_parts,
    "item_side_conflicts": report.item_side_conflicts,
    "dicom_parts": report.dicom_parts,
    "overlaps": report.overlaps,
    "sexes_mentioned": report.sexes_mentioned,
    "sex_terms": report.sex_terms,
    "sex_conflict_terms": report.sex_conflict_terms,
    "critical_values": report.critical_values,
    "numbering": report.numbering,
    "numbering_consistent": report.numbering_consistent,
    "missing_units": report.missing_units,
    "report_modalities": report.report_modalities,
    "comparison_without_prior": report.comparison_without_prior,
    "placeholders": report.placeholders,
    "standard_item": report.standard_item,
    # DICOM header (series list)
    "is_diagnostic": dicom.is_diagnostic,
    "diagnostic_series": dicom.diagnostic_series,
    "count_missing": dicom.count_missing,
    "pixel_spacing_ok": dicom.pixel_spacing_ok,
    "thicknesses": dicom.thicknesses,
    "min_thickness": dicom.min_thickness,
    "max_thickness": dicom.max_thickness,
    "kernel_class": dicom.kernel_class,
    "kernel_classes": dicom.kernel_classes,
    "has_window": dicom.has_window,
    "has_series": dicom.has_series,
    "empty_series": dicom.empty_series,
    "max_instances": dicom.max_instances,
    "series_modalities": dicom.series_modalities,
    "series_uids_unique": dicom.series_uids_unique,
    "uid_valid": dicom.uid_valid,
}

__all__ = ["FUNCTIONS"]
