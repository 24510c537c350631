"""Per-exam rendering state: seeded random streams, vendor style, UIDs, defects to apply.

Random streams are named (``ctx.rng("anatomy")``, ``ctx.rng("noise:3")``...) and each is
seeded from (spec seed, exam key, name), so adding a series or a defect never shifts the
draws of another part: the same seed gives the same anatomy whatever else changes.
Defects follow TorchIO's split: the planner's parameters are read here, the handlers
apply them and :meth:`ExamContext.record` stores what was really applied, with values
measured on the pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..spec import Defect, ImagingSpec

HERE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def vendors() -> dict[str, Any]:
    return yaml.load((HERE / "vendors.yaml").read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@lru_cache(maxsize=1)
def protocols() -> dict[str, Any]:
    return yaml.load((HERE / "protocols.yaml").read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


VENDOR_ALIASES = {"ge": "GE", "siemens": "Siemens", "philips": "Philips", "uih": "UIH", "united imaging": "UIH", "联影": "UIH", "canon": "Canon", "toshiba": "Canon"}


def modality_group(modality: str) -> str:
    return "DX" if modality in ("DX", "CR") else modality


@dataclass
class PendingDefect:
    """A planner's defect with its handler kind and normalised parameters (aliases resolved)."""

    defect: Defect
    kind: str
    applied: bool = False
    params: dict[str, Any] = field(default_factory=dict)


#: direction words accepted for off-centre defects -> image display terms
DIRECTIONS = {
    "left": "left", "right": "right", "up": "up", "down": "down",
    "anterior": "up", "posterior": "down", "cranial": "up", "caudal": "down", "superior": "up", "inferior": "down",
    "偏左": "left", "偏右": "right", "偏上": "up", "偏下": "down",
}
#: foreign-object names accepted (planner vocabulary -> renderer shapes)
OBJECTS = {"necklace": "necklace", "button": "buttons", "buttons": "buttons", "ecg_lead": "ecg_leads", "ecg_leads": "ecg_leads", "coin": "coin", "bra_clip": "bra_clip", "hairpin": "hairpin", "hair_clip": "hairpin"}


LANDMARK_ALIASES = {
    "thoracic_inlet": "T1_top", "S1": "S1_top", "skull": "vertex", "distal_femur": "knee_top", "proximal_tibia": "knee_bottom",
    "proximal_fibula": "knee_bottom", "costophrenic_angle_left": "lung_base", "costophrenic_angle_right": "lung_base",
    "lesser_trochanter": "lesser_trochanter", "thigh": "body_bottom",
}


def resolve_landmark(name: str, landmarks: dict[str, float]) -> str | None:
    """Landmark key for a planner's name (``C1`` -> ``C1_center``, ``thoracic_inlet`` -> ``T1_top``...)."""
    for key in (name, LANDMARK_ALIASES.get(name, ""), f"{name}_center"):
        if key and key in landmarks:
            return key
    return None


def normalise_params(kind: str, value: str, params: dict[str, Any], modality: str) -> dict[str, Any]:
    """Accept the planner's parameter names and fill the renderer's (the original dict is kept for the record)."""
    p = dict(params)
    if kind == "off_centre":
        p["direction"] = DIRECTIONS.get(str(p.get("direction") or value), DIRECTIONS.get(value, "left"))
    if kind == "range_too_large":
        if "extra_mm" in p and "excess_mm" not in p:
            p["excess_mm"] = p["extra_mm"]
        if "end" in p and "side" not in p:
            p["side"] = "superior" if p["end"] == "top" else "inferior"
    if kind in ("thickness_nonstandard",) and "thickness_mm" in p and "slice_thickness_mm" not in p:
        p["slice_thickness_mm"] = p["thickness_mm"]
    if kind == "dose_above_reference" and "ctdivol_factor" in p and "factor" not in p:
        p["factor"] = p["ctdivol_factor"]
    if kind == "collimation_too_wide" and "extra_mm" in p and "margin_mm" not in p:
        p["margin_mm"] = p["extra_mm"]
    if kind == "motion" and "severity" in p:
        sev = float(p["severity"])
        p.setdefault("shift_mm", round(3.0 + 7.0 * sev, 2))
        p.setdefault("strength", round(0.2 + 0.5 * sev, 3))
        if modality in ("DX", "CR"):
            # radiograph: the detector sees the movement during the exposure as a smear along it
            p.setdefault("smear_mm", round(10.0 * sev, 2))
    if kind == "foreign_object" and p.get("object"):
        p["object"] = OBJECTS.get(str(p["object"]), str(p["object"]))
    if isinstance(p.get("missing"), str):
        p["missing"] = [p["missing"]]
    return p


@dataclass
class ExamContext:
    spec: ImagingSpec
    out_dir: Path
    labels_dir: Path
    vendor_key: str
    vendor: dict[str, Any]
    model: dict[str, Any]
    language: str
    study_dt: datetime
    defects: list[PendingDefect] = field(default_factory=list)
    applied: list[Defect] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    structures: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    series_counter: int = 0
    #: run by render_exam after every series is written (records that need measured pixels)
    after_write: list[Any] = field(default_factory=list)

    # ---------------------------------------------------------------- construction
    @classmethod
    def create(cls, spec: ImagingSpec, out_dir: Path, labels_dir: Path | None = None) -> ExamContext:
        if spec.modality not in ("CT", "MR", "DX", "CR"):
            raise ValueError(f"unsupported modality {spec.modality!r}: expected CT, MR, DX or CR")
        if spec.size not in ("small", "full"):
            raise ValueError(f"unsupported size {spec.size!r}: expected 'small' or 'full'")
        if not spec.regions:
            raise ValueError("ImagingSpec.regions is empty: name at least one region")
        vendor_key = VENDOR_ALIASES.get(str(spec.vendor).strip().lower(), spec.vendor)
        table = vendors()["vendors"]
        if vendor_key not in table:
            raise ValueError(f"unknown vendor {spec.vendor!r}; known: {', '.join(table)}")
        vendor = table[vendor_key]
        rng = _stream(spec, "vendor")
        group = spec.modality if spec.modality != "CR" else "CR"
        models = vendor["models"].get(group) or vendor["models"]["DX"]
        wanted = spec.header.get("ManufacturerModelName")
        model = next((m for m in models if m["name"] == wanted), None) or dict(models[int(rng.integers(len(models)))])
        if wanted and model["name"] != wanted:
            model = {**model, "name": wanted}
        if spec.modality == "MR" and spec.header.get("MagneticFieldStrength"):
            model = {**model, "field": float(spec.header["MagneticFieldStrength"])}
        weights = vendors()["language_weights"]
        lang = spec.header.get("language") or str(rng.choice(list(weights), p=np.array(list(weights.values())) / sum(weights.values())))
        study_dt = _study_datetime(spec, rng)
        out_dir = Path(out_dir)
        ctx = cls(
            spec=spec,
            out_dir=out_dir,
            labels_dir=Path(labels_dir) if labels_dir else out_dir / spec.exam_key / "labels",
            vendor_key=vendor_key,
            vendor=vendor,
            model=model,
            language=lang,
            study_dt=study_dt,
        )
        ctx._resolve_defects()
        return ctx

    def _resolve_defects(self) -> None:
        kinds = protocols()["defect_kinds"].get(modality_group(self.spec.modality), {})
        for d in self.spec.defects:
            kind = d.params.get("kind") or kinds.get(d.dimension, {}).get(d.value)
            if not kind:
                self.notes.append(f"defect {d.dimension}={d.value} has no handler for {self.spec.modality}; not applied")
                self.measurements.setdefault("defects_not_applied", []).append({"dimension": d.dimension, "value": d.value, "params": d.params, "reason": "no handler for this modality"})
                continue
            self.defects.append(PendingDefect(d, str(kind), params=normalise_params(str(kind), d.value, d.params, self.spec.modality)))

    # ---------------------------------------------------------------- randomness and ids
    def rng(self, name: str) -> np.random.Generator:
        return _stream(self.spec, name)

    def uid(self, *parts: object) -> str:
        key = "/".join([str(self.spec.seed), self.spec.exam_key, *map(str, parts)])
        digest = hashlib.sha256(key.encode()).hexdigest()
        prefix = str(self.spec.header.get("uid_prefix") or "").rstrip(".")
        if prefix:
            tail = str(int(digest[:24], 16))
            return f"{prefix}.{tail}"[:64]
        return f"2.25.{int(digest[:32], 16)}"

    # ---------------------------------------------------------------- defects
    def pending(self, *kinds: str) -> list[PendingDefect]:
        return [p for p in self.defects if p.kind in kinds and not p.applied]

    def take(self, kind: str) -> PendingDefect | None:
        found = self.pending(kind)
        return found[0] if found else None

    def record(self, pending: PendingDefect, **measured: Any) -> None:
        """Store an applied defect with the planner's params plus what was measured."""
        pending.applied = True
        params = {**pending.defect.params, "kind": pending.kind, **measured}
        self.applied.append(Defect(pending.defect.dimension, pending.defect.value, _jsonable(params)))

    def skip(self, pending: PendingDefect, reason: str) -> None:
        pending.applied = True
        self.measurements.setdefault("defects_not_applied", []).append(
            {"dimension": pending.defect.dimension, "value": pending.defect.value, "params": pending.defect.params, "kind": pending.kind, "reason": reason}
        )

    def finish_defects(self) -> None:
        for p in self.defects:
            if not p.applied:
                self.skip(p, f"kind {p.kind!r} does not apply to a {self.spec.modality} exam of {self.spec.regions}")

    # ---------------------------------------------------------------- series numbering
    def next_series_number(self, step: int = 1) -> int:
        self.series_counter += step
        return self.series_counter

    @property
    def exam_dir(self) -> Path:
        return self.out_dir / self.spec.exam_key

    @property
    def size_table(self) -> dict[str, Any]:
        return protocols()["sizes"][self.spec.size]


def vendor_private(ctx: ExamContext, b: float | None = None) -> dict[tuple[int, int, str], Any]:
    """The vendor's private blocks (vendors.yaml) as {(group, element, VR): value}.

    Entries whose value needs a b-value are included only when ``b`` is given (DWI).
    """
    out: dict[tuple[int, int, str], Any] = {}
    for entry in ctx.vendor.get("private", []):
        needs_b = "{b" in str(entry["value"])
        if needs_b != (b is not None):
            continue
        group, vr = int(entry["group"]), str(entry["vr"])
        value = str(entry["value"]).format(model=ctx.model["name"], b=int(b or 0), b_private=f"{int(b or 0)}\\8\\0\\0")
        out[(group, 0x0010, "LO")] = str(entry["creator"])
        if vr in ("SL", "SS", "UL", "US"):
            typed: Any = int(float(value.split("\\")[0]))
        elif vr in ("FL", "FD"):
            typed = float(value)
        else:
            typed = value
        out[(group, 0x1000 + int(entry["element"]), vr)] = typed
    return out


def _stream(spec: ImagingSpec, name: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{spec.seed}/{spec.exam_key}/{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _study_datetime(spec: ImagingSpec, rng: np.random.Generator) -> datetime:
    h = spec.header
    date, time = str(h.get("StudyDate") or ""), str(h.get("StudyTime") or "")
    if len(date) >= 8:
        try:
            base = datetime.strptime(date[:8], "%Y%m%d")
            digits = (time.split(".")[0] + "000000")[:6]
            return base.replace(hour=int(digits[:2]) % 24, minute=int(digits[2:4]) % 60, second=int(digits[4:6]) % 60)
        except ValueError:
            pass
    day = datetime(2026, 1, 5) + timedelta(days=int(rng.integers(0, 300)))
    return day + timedelta(seconds=int(rng.integers(8 * 3600, 20 * 3600)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 4)
    return value
