"""The expected series label of a generated series, from the generator's truth.

One mapping from the synthetic generator's series roles (``truth/<exam>.json`` ->
``imaging.series[*]``) to the public label vocabularies of ``radqc series``
(:mod:`radqc.pipelines.series.types`). Training code, model cards and ``radqc eval series``
all use this function, so a label means the same thing everywhere.
"""

from __future__ import annotations

from typing import Any

#: MR generator roles -> public sequence value.
MR_SEQUENCE = {"T1W": "T1W", "T2W": "T2W", "FLAIR": "FLAIR", "STIR": "STIR", "PD_FS": "PD", "T2W_FS": "T2W",
               "DWI": "DWI", "ADC": "ADC", "T1W_POST": "T1C"}
#: DX generator roles -> view.
DX_VIEW = {"PA": "PA", "AP": "AP", "LAT": "LAT", "OBL": "OBL"}
#: Renderer region of a radiograph / MR exam -> series region value.
REGION = {"lumbar_spine": "lumbar_spine", "cervical_spine": "cervical_spine", "thoracic_spine": "thoracic_spine"}


def _majority(values: list[str]) -> str | None:
    values = [v for v in values if v]
    return max(set(values), key=values.count) if values else None


def expected_label(series: dict[str, Any]) -> dict[str, Any]:
    """The label fields a correct classifier gives ``series`` (one ``imaging.series`` entry).

    Fields not applicable are ``None``. CT phase follows the pixels: a series the generator
    rendered without contrast (``extra.enhanced`` false, e.g. the F5 evidence key
    ``contrast_absent``) is ``native`` whatever its description says. A VR rendering has no
    phase (a surface picture, not HU), a derived MPR/MIP/spectral series has its source's.
    """
    role = str(series.get("role") or "")
    modality = str(series.get("modality") or "").upper()
    extra = series.get("extra") or {}
    out: dict[str, Any] = {"role": "unknown", "derived_type": None, "plane": None, "sequence": None, "phase": None,
                           "kernel_class": None, "thickness_class": None, "view": None,
                           "region": _majority(list(series.get("slice_regions") or []))}
    if modality == "CT":
        if role == "localizer":
            out.update(role="localizer")
        elif role == "dose_report":
            out.update(role="dose_report")
        elif role.startswith("axial_"):
            _, kernel, thk = role.split("_")
            out.update(role="original", plane="axial", kernel_class=kernel,
                       thickness_class="thin" if thk == "thin" else "standard")
        elif role in ("mpr_coronal", "mpr_sagittal"):
            out.update(role="derived", derived_type="mpr", plane=role.split("_")[1])
        elif role == "mip":
            out.update(role="derived", derived_type="mip", plane="axial")
        elif role == "vr":
            out.update(role="derived", derived_type="vr")
        elif role.startswith("spectral_"):
            out.update(role="derived", derived_type=role.split("_", 1)[1], plane="axial")
        if out["role"] in ("original", "derived") and role != "vr":
            phase = series.get("phase")
            if phase and extra.get("enhanced") is False:
                phase = "native"
            out["phase"] = phase
    elif modality == "MR":
        seq = MR_SEQUENCE.get(role)
        out.update(role="derived" if role == "ADC" else "original", sequence=seq or "other",
                   plane=series.get("plane"), derived_type="adc" if role == "ADC" else None)
    elif modality in ("DX", "CR", "DR", "RG", "MG"):
        out.update(role="original", view=DX_VIEW.get(role))
        region = extra.get("region") or out["region"]
        out["region"] = REGION.get(str(region), region)
    return out
