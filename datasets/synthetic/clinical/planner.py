"""The planner: everything about a synthetic exam that is not pixels, decided from a seed.

:func:`plan_set` plans ``n`` exams in order. Each exam gets its own random stream derived
from (seed, index), so exam *k* is the same whatever ``n`` is. Decisions are taken in an
order that lets every seeded label be true by construction:

1. hospital, modality, ordered standard items (constrained by a cross-exam irregularity:
   F1 copies another exam's imaging, F3 reuses another exam's device and time);
2. the charge irregularity (F-id) and the rule-QC violations;
3. patient identity (ID/phone valid unless a violation says otherwise), times, doctors;
4. the :class:`ImagingSpec` (series, phases, evidence, image defects, header, noise);
5. charges (add-ons only where the evidence is present, unless seeded), the report;
6. the HIS/RIS records exactly as they will be written.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from radqc.datasets.synthetic.clinical import charges as ch
from radqc.datasets.synthetic.clinical import violations as vio
from radqc.datasets.synthetic.clinical._data import load
from radqc.datasets.synthetic.clinical.hospitals import Device, Hospital, hospitals
from radqc.datasets.synthetic.clinical.identities import Identity, draw_identity
from radqc.datasets.synthetic.clinical.imaging_qc import draw_defects
from radqc.datasets.synthetic.clinical.index_string import index_string
from radqc.datasets.synthetic.clinical.items import (
    OrderedItem,
    WrittenOrder,
    distributable,
    draw_combo,
    item,
    standard_items,
    write_order,
)
from radqc.datasets.synthetic.clinical.reports import (
    Report,
    ReportOptions,
    ReportPart,
    pick_layout,
    write_report,
)
from radqc.datasets.synthetic.spec import Defect, ImagingSpec, SeriesRole

GENERATOR_VERSION = "0.1.12"  # 0.1.12: the thoracic-spine radiograph DX.TSPINE.APLAT (胸椎正侧位) is an item of the table and of the DX combos (weight 1; the renderer already drew thoracic AP/LAT views); 0.1.11: a CT hairpin lies on the scalp at the back of the head (was drawn inside the skull near the vertex, where an image reader calls it an implant); 0.1.10: a radiograph motion smears by its severity (smear 10 mm x severity U(0.4, 1.0); was a fixed ~4 mm box that ignored severity); 0.1.9: an F11 exam whose dropped thin series was its only lung/bone-kernel reconstruction is labelled reconstruction deviation (recon_series_missing; truth only, pixels unchanged); 0.1.8: the qc-items profile (every item combination equally often; other profiles unchanged); 0.1.7: a CT truncation whose body fits inside the reduced field (narrow heads) is not recorded nor drawn (it was recorded with 0 truncated slices); 0.1.6: a CT knee scanned too long extends past the femur/tibia (was cut at depth -5 mm, i.e. shortened); 0.1.5: metal and foreign objects drawn where the images show them (radiograph metal ~40x water; MR implants inside the imaged volume with a susceptibility void and pile-up rim; CT objects inside the scanned range), recorded only when a series shows them; 0.1.4: expected_qc graded by the exam item's scoring standard (images unchanged); 0.1.3: no rotation label on knee radiographs (the knee is drawn unrotated); 0.1.2: returning patients
CST = timezone(timedelta(hours=8))
START_DATE = date(2026, 1, 5)
#: Exams are spread over this many days (fixed, so exam k does not depend on the set size).
SPAN_DAYS = 60
PROFILES = tuple(load("profiles")["profiles"])  # profiles.yaml names them

DERIVED_PREFIXES = ("mpr", "mip", "vr")
REGION_ORDER = ("head", "neck", "cervical_spine", "chest", "thoracic_spine", "abdomen", "lumbar_spine", "pelvis", "knee")
#: Deliberately malformed record lines (each is a broken re-send of a good line, so the good
#: data is complete and the broken copy must be quarantined by ``radqc ingest-records``).
MALFORMED_RECORD_KINDS = ("bad_json", "missing_hospital_code", "bad_time", "bad_sex", "bad_quantity", "charge_bad_json")
MALFORMED_FILE_KINDS = ("truncated", "not_dicom", "empty_file")


def derive_seed(seed: int, *keys: Any) -> int:
    """A 63-bit seed from ``seed`` and keys (stable across Python versions and processes)."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def profile(name: str) -> dict[str, Any]:
    profiles = load("profiles")["profiles"]
    if name not in profiles:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(profiles)}")
    return profiles[name]


@dataclass
class ExamPlan:
    exam_key: str
    index: int
    hospital: Hospital
    identity: Identity
    patient_id: str
    accession: str
    modality: str
    urgency: str
    order: WrittenOrder
    imaged: list[OrderedItem]
    device: Device
    timeline: vio.Timeline
    spec: ImagingSpec
    report: Report
    billing: ch.Billing
    violations: list[dict[str, Any]]
    irregularities: list[dict[str, Any]]
    exam_record: dict[str, Any]
    charge_records: list[dict[str, Any]]
    technician: str
    report_doctor: str
    review_doctor: str
    facts: dict[str, Any]
    related: list[dict[str, Any]] = field(default_factory=list)
    malformed_record: str | None = None
    malformed_file: str | None = None
    #: The earlier exam (at another hospital) of the same person, for returning patients.
    same_person_as: str | None = None

    @property
    def planned_irregularity(self) -> str | None:
        return self.irregularities[0]["id"] if self.irregularities else None


# -- helpers ------------------------------------------------------------------------------------
def _weighted_key(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[float(weights[k]) for k in keys], k=1)[0]


def _exam_datetime(rng: random.Random, span_days: int, urgency: str) -> datetime:
    day = START_DATE + timedelta(days=rng.randrange(span_days))
    if urgency == "emergency":
        minutes = rng.randrange(0, 24 * 60)
    else:
        minutes = rng.randrange(7 * 60 + 30, 20 * 60)
    return datetime.combine(day, time(0, 0), CST) + timedelta(minutes=minutes, seconds=rng.randrange(60))


class _Schedule:
    """Busy intervals per device serial, so only seeded F3 exams overlap on one device."""

    def __init__(self) -> None:
        self.busy: dict[str, list[tuple[datetime, datetime]]] = {}

    def free_start(self, serial: str, start: datetime, minutes: float, rng: random.Random) -> datetime:
        end = start + timedelta(minutes=minutes)
        moved = True
        while moved:
            moved = False
            for s, e in self.busy.get(serial, []):
                if start < e and s < end:
                    start = e + timedelta(minutes=rng.uniform(1, 8))
                    end = start + timedelta(minutes=minutes)
                    moved = True
        return start

    def book(self, serial: str, start: datetime, end: datetime) -> None:
        self.busy.setdefault(serial, []).append((start, end))


def _side_for(rng: random.Random, it: Any) -> str | None:
    return rng.choice(("L", "R")) if it.lateral else None


def _roles(items: list[OrderedItem], acquisition: str) -> list[SeriesRole]:
    """Series roles of the exam: one localizer and dose report, per-region roles otherwise."""
    roles: list[SeriesRole] = []
    seen: set[tuple[str, str]] = set()
    multi_region = len({oi.item.region for oi in items}) > 1
    for oi in items:
        for row in oi.item.series:
            role = row["role"]
            params = dict(row.get("params") or {})
            if role in ("localizer", "dose_report"):
                key = (role, "")
            else:
                if multi_region:
                    params["region"] = oi.item.region
                if oi.side:
                    params["laterality"] = oi.side
                key = (role, repr(sorted(params.items())))
                if acquisition == "one_acquisition" and role.startswith("axial"):
                    # One long acquisition: its axial series cover every region at once.
                    params.pop("region", None)
                    key = (role, repr(sorted(params.items())))
            if key in seen:
                continue
            seen.add(key)
            roles.append(SeriesRole(role, params))
    # localizer first, dose report last
    roles.sort(key=lambda r: 0 if r.role == "localizer" else 2 if r.role == "dose_report" else 1)
    return roles


def _is_thin(role: SeriesRole) -> bool:
    return float(role.params.get("thickness_mm", 99)) < 2.0


#: kernel classes whose loss (F11 drops the thin series) leaves the item without a reconstruction its
#: standard requires; a dropped soft thin series leaves a soft thick one (neck, abdomen, pelvis)
KERNEL_ZH = {"lung": "肺", "bone": "骨"}


def _lost_kernels(dropped: list[SeriesRole], kept: list[SeriesRole]) -> list[str]:
    """Lung/bone kernel classes of ``dropped`` axial series that no ``kept`` axial series has."""
    def kclass(r: SeriesRole) -> str:
        return str(r.params.get("kernel") or (r.role.split("_")[1] if r.role.count("_") else "soft"))

    have = {kclass(r) for r in kept if r.role.startswith("axial")}
    return sorted({kclass(r) for r in dropped if r.role.startswith("axial")} & set(KERNEL_ZH) - have)


def _is_derived(role: SeriesRole) -> bool:
    return role.role.startswith(DERIVED_PREFIXES)


def _header(hospital: Hospital, ident: Identity, patient_id: str, accession: str, when: datetime, order: WrittenOrder,
            device: Device, technician: str, imaged: list[OrderedItem], duration_min: float, seq: int) -> dict[str, Any]:
    body_parts = [oi.item.body_part for oi in imaged]
    h: dict[str, Any] = {
        "PatientName": ident.name if hospital.name_style == "chinese" else ident.name_pinyin,
        "PatientID": patient_id,
        "PatientSex": ident.sex,
        "PatientBirthDate": f"{ident.birth_date:%Y%m%d}",
        "PatientAge": f"{min(ident.age_at(when.date()), 999):03d}Y",
        "AccessionNumber": accession,
        "StudyDate": f"{when:%Y%m%d}",
        "StudyTime": f"{when:%H%M%S}",
        "StudyID": str(seq + 1),
        "StudyDescription": "，".join(order.exam_items)[:64],
        "RequestedProcedureDescription": order.exam_items[0][:64],
        "InstitutionName": hospital.name,
        "InstitutionAddress": hospital.province,
        "Manufacturer": device.vendor,
        "ManufacturerModelName": device.model,
        "DeviceSerialNumber": device.serial,
        "StationName": device.station,
        "OperatorsName": technician,
        "BodyPartExamined": body_parts[0],
        "TimezoneOffsetFromUTC": "+0800",
        # Not DICOM keywords: facts the renderer needs to write consistent headers.
        # institution_code belongs in InstitutionCodeSequence[0].CodeValue (ingest reads the
        # hospital code from there); a sequence cannot be passed as a plain header value.
        "institution_code": hospital.code,
        "acquisition_minutes": round(duration_min, 2),
        "body_parts": body_parts,
    }
    if ident.id_number:
        h["OtherPatientIDs"] = ident.id_number
    if device.field_strength:
        h["MagneticFieldStrength"] = device.field_strength
    side = next((oi.side for oi in imaged if oi.side), None)
    if side:
        h["Laterality"] = side
    return h


def balanced_combo(seed: int, index: int, modalities: Iterable[str]) -> tuple[str, list[str], str]:
    """Exam ``index``'s (modality, item codes, acquisition) when every combination is equally often.

    The combinations of ``modalities`` (items.yaml ``combos``) are dealt in blocks: each block of
    ``len(combos)`` exams holds each combination once, in an order seeded by (seed, block), so the
    choice depends on the exam index only (not on the set size or the other exams)."""
    combos = [(m, list(c["items"]), str(c.get("acquisition", "separate")))
              for m in sorted(modalities) for c in load("items")["combos"].get(m, [])]
    block, position = divmod(index, len(combos))
    order = list(range(len(combos)))
    random.Random(derive_seed(seed, "combo-block", block)).shuffle(order)
    return combos[order[position]]


# -- the planner ------------------------------------------------------------------------------------
class Planner:
    """Plans a set of exams; holds the per-set state (counters, device schedules, partners)."""

    def __init__(self, seed: int, profile_name: str = "mixed", size: str = "small", span_days: int | None = None,
                 n_hint: int = 100) -> None:
        self.seed = seed
        self.profile_name = profile_name
        self.profile = profile(profile_name)
        self.size = size
        self.span_days = span_days or SPAN_DAYS
        rng = random.Random(derive_seed(seed, "set"))
        self.counters = {h.code: rng.randrange(1000, 9000) for h in hospitals()}
        self.patient_counters = {h.code: rng.randrange(10000, 90000) for h in hospitals()}
        self.schedule = _Schedule()
        self.plans: list[ExamPlan] = []
        self.partnered: set[str] = set()

    def _returning_identity(self, index: int, hospital: Hospital, drawn: Identity) -> tuple[str, Identity] | None:
        """A returning patient (复诊/转诊): the person of an earlier exam at another hospital.

        This is what recognition (互认) is about: the same person (same national ID, name, birth
        date) with a new patient ID at a second hospital. Drawn from its own random stream, so a
        profile without ``returning_patient_rate`` produces byte-identical sets as before. Only
        clean identities are reused (a seeded ID/phone violation keeps its own drawn identity).
        """
        rate = float(self.profile.get("returning_patient_rate", 0.0))
        if rate <= 0 or drawn.id_status != "valid" or drawn.phone_status != "valid":
            return None
        rrng = random.Random(derive_seed(self.seed, "returning", index))
        if rrng.random() >= rate:
            return None
        candidates = [p for p in self.plans if p.hospital.code != hospital.code
                      and p.identity.id_status == "valid" and p.identity.phone_status == "valid"]
        if not candidates:
            return None
        earlier = rrng.choice(candidates[-40:])
        return earlier.exam_key, earlier.identity

    # one exam -------------------------------------------------------------------------------
    def plan(self, index: int) -> ExamPlan:
        rng = random.Random(derive_seed(self.seed, "exam", index))
        prof = self.profile
        exam_key = f"E{index:05d}"

        # 1. the charge irregularity first: cross-exam ones constrain everything else.
        fid: str | None = None
        partner: ExamPlan | None = None
        if rng.random() < prof["irregularity_rate"]:
            weights = {k: v["weight"] for k, v in load("irregularities").items()}
            fid = _weighted_key(rng, weights)
            if fid in ch.CROSS_EXAM_IDS:
                candidates = [p for p in self.plans if p.exam_key not in self.partnered
                              and not any(r["id"] in ch.CROSS_EXAM_IDS for r in p.irregularities)
                              and p.modality in prof["modalities"]]
                if candidates:
                    partner = rng.choice(candidates[-50:])
                else:
                    fid = None  # no partner yet (first exams): pick a single-exam pattern below
        urgency = "emergency" if rng.random() < prof["emergency_rate"] else "routine"

        # 2. hospital, modality, items
        balanced: tuple[str, list[str], str] | None = None  # the qc-items profile's dealt combination
        if partner is not None:
            hospital = partner.hospital
            modality = partner.modality
        else:
            hospital = rng.choice(hospitals())
            balanced = balanced_combo(self.seed, index, prof["modalities"]) if prof.get("item_balanced") else None
            modality = balanced[0] if balanced else _weighted_key(rng, prof["modalities"])
        if partner is not None and fid == "F1":
            imaged = [OrderedItem(oi.item, oi.side) for oi in partner.imaged]
            acquisition = partner.spec.acquisition
        else:
            codes, acquisition = (balanced[1], balanced[2]) if balanced else draw_combo(rng, modality)
            imaged = [OrderedItem(item(c), None) for c in codes]
            for oi in imaged:
                oi.side = _side_for(rng, oi.item)

        if fid is not None and fid not in ch.CROSS_EXAM_IDS:
            options = ch.applicable_irregularities(hospital, modality, imaged)
            if fid not in options:
                fid = rng.choice(options) if options else None

        # F5: the order (and bill) says enhanced; what was imaged is plain only.
        # F7: more parts billed (and ordered) than imaged.
        ordered = list(imaged)
        extra_billed: list[OrderedItem] = []
        if fid == "F5" and not any(oi.item.enhanced for oi in imaged):
            fid = None
        if fid == "F7":
            extra = self._extra_part(rng, imaged)
            if extra is None:
                fid = None
            else:
                extra_billed = [extra]
                ordered = imaged + [extra]

        # 3. device, time
        if partner is not None:
            device = partner.device
        else:
            devices = hospital.devices_for(modality)
            if modality == "DX":
                mobile = [d for d in devices if d.mobile]
                fixed = [d for d in devices if not d.mobile] or devices
                device = rng.choice(mobile) if mobile and (urgency == "emergency" and rng.random() < 0.5) else rng.choice(fixed)
            else:
                device = rng.choice(devices)
        lo, hi = vio.DURATION_MIN[modality]
        duration = rng.uniform(lo, hi)
        if partner is not None and fid == "F3":
            # Starts 10–60 s after the partner started on the same device: inside its
            # acquisition window however short the renderer makes it (two exams within one
            # minute on one machine is the documented case).
            exam_time = partner.timeline.exam_time + timedelta(seconds=rng.randint(10, 60))
            urgency = partner.urgency
        else:
            exam_time = _exam_datetime(rng, self.span_days, urgency)
            exam_time = self.schedule.free_start(device.serial, exam_time, duration, rng)
        self.schedule.book(device.serial, exam_time, exam_time + timedelta(minutes=duration))

        # 4. rule-QC violations
        parts = [oi.item.part for oi in imaged]
        has_sex_part = any(p in load("reports")["sex_contradiction"] for p in parts)
        has_lateral = any(oi.side for oi in imaged) or any(
            a.get("lateral") and modality in a["modalities"]
            for p in parts for a in load("reports")["parts"].get(p, {}).get("abnormal", []))
        chosen_v: list[str] = []
        if rng.random() < prof["violation_rate"]:
            chosen_v = vio.draw(rng, vio.applicable(has_sex_part, has_lateral), 1 if rng.random() < 0.7 else 2)

        # 5. identity
        sex: str | None = None
        region_code = rng.choice(hospital.region_codes)
        id_status = "valid"
        phone_status = "valid"
        if "id_empty" in chosen_v:
            id_status = "empty"
        if "id_invalid" in chosen_v:
            id_status = rng.choice(("bad_checksum", "bad_checksum", "bad_length", "bad_birth_date"))
        if "phone_empty" in chosen_v:
            phone_status = "empty"
        if "phone_invalid" in chosen_v:
            phone_status = rng.choice(("bad_length", "bad_prefix", "landline"))
        age = max(1, min(92, int(rng.triangular(8, 92, 60))))
        ident = draw_identity(rng, region_code, exam_time.date(), sex=sex, age=age, id_status=id_status,
                              phone_status=phone_status)
        same_person_as = None
        returning = self._returning_identity(index, hospital, ident)
        if returning is not None:
            same_person_as, ident = returning
        self.patient_counters[hospital.code] += rng.randint(1, 40)
        patient_id = hospital.patient_id(self.patient_counters[hospital.code])
        if same_person_as is not None:  # a person this hospital already knows keeps their patient ID
            known = next((p.patient_id for p in self.plans if p.hospital.code == hospital.code
                          and p.identity.id_number == ident.id_number), None)
            patient_id = known or patient_id
        self.counters[hospital.code] += rng.randint(1, 7)
        accession = hospital.accession(modality, exam_time, self.counters[hospital.code])

        # 6. times and people
        tl = vio.timeline(rng, modality, urgency, exam_time, chosen_v, duration_min=duration)
        report_doctor, review_doctor = vio.doctors(rng, hospital, "same_doctor" in chosen_v)
        technician = rng.choice(hospital.technicians)

        # 7. order text and report layout
        style = hospital.report_style
        layout = pick_layout(rng, style["layouts"], len(set(parts)), distributable(ordered))
        order = write_order(rng, ordered, force_style="distributed" if layout == "F" else None)

        # 8. imaging spec
        spec, facts = self._spec(rng, exam_key, modality, imaged, acquisition, device, fid, partner, ident, hospital,
                                 patient_id, accession, exam_time, order, technician, duration, urgency, index)

        # 9. charges
        billing = ch.bill(rng, hospital, imaged, facts, exam_time, fid if fid not in ch.CROSS_EXAM_IDS else None,
                          extra_items=extra_billed)
        irregularities = list(billing.irregularities)
        if fid in ch.CROSS_EXAM_IDS and partner is not None:
            main = [i for i, ln in enumerate(billing.lines) if ln.key in ("ct_plain", "ct_enhanced", "mr_plain", "mr_enhanced", "xray")]
            for i in main:
                billing.lines[i].irregularity = fid
            detail: dict[str, Any] = {"partner_exam": partner.exam_key, "partner_accession": partner.accession}
            if fid == "F3":
                overlap_end = min(partner.timeline.exam_end, tl.exam_end)
                detail.update({"device_serial": device.serial,
                               "overlap_minutes": round((overlap_end - exam_time).total_seconds() / 60, 1)})
            irregularities.insert(0, {"id": fid, "lines": main, "detail": detail})
            partner.related.append({"id": fid, "partner_exam": exam_key, "role": "source" if fid == "F1" else "overlapped"})
            self.partnered.add(partner.exam_key)
        for irr in irregularities:
            info = ch.irregularity_info(irr["id"])
            irr["name_zh"], irr["name_en"] = info["name_zh"], info["name_en"]

        # 10. report
        report_parts = [ReportPart(oi.item.part, modality, oi.label, oi.side) for oi in imaged]
        # de-duplicate parts (e.g. two items on one part) keeping the first title
        unique: dict[str, ReportPart] = {}
        for rp in report_parts:
            unique.setdefault(rp.part, rp)
        report_parts = list(unique.values())
        violations_out: list[dict[str, Any]] = []
        opts = ReportOptions(layout=layout, sex=ident.sex, exam_date=exam_time.date(),
                             findings_header=rng.random() < style["findings_header"],
                             impression_header=rng.random() < style["impression_header"],
                             abnormal_rate=prof["abnormal_rate"])
        if "part_mismatch" in chosen_v:
            swapped = self._mismatch_part(rng, modality, report_parts)
            if swapped is None:
                chosen_v.remove("part_mismatch")
            else:
                k, new_rp = swapped
                violations_out.append(vio.labelled("part_mismatch", imaged_part=report_parts[k].part, reported_part=new_rp.part))
                report_parts[k] = new_rp
        if "sex_contradiction" in chosen_v:
            sp = next(rp.part for rp in report_parts if rp.part in load("reports")["sex_contradiction"]) if any(
                rp.part in load("reports")["sex_contradiction"] for rp in report_parts) else None
            if sp is None:
                chosen_v.remove("sex_contradiction")
            else:
                opts.sex_contradiction_part = sp
                violations_out.append(vio.labelled("sex_contradiction", part=sp, patient_sex=ident.sex))
        if "laterality_contradiction" in chosen_v:
            lateral = [rp for rp in report_parts if rp.side]
            if lateral:
                opts.laterality_flip, opts.laterality_part = "findings", lateral[0].part
            else:
                cands = [rp for rp in report_parts if any(a.get("lateral") and modality in a["modalities"]
                                                          for a in load("reports")["parts"][rp.part].get("abnormal", []))]
                if cands:
                    opts.laterality_flip, opts.laterality_part = "impression", cands[0].part
            if opts.laterality_flip is None:
                chosen_v.remove("laterality_contradiction")
        report = write_report(rng, report_parts, opts)
        sides: dict[str, str] = {}
        if opts.laterality_flip:
            sides = next((f["sides"] for f in report.facts["parts"] if f["part"] == opts.laterality_part), {})
        if opts.laterality_flip and sides:  # no side written (a normal report): nothing was flipped, no label
            between = ["exam_items", "findings"] if opts.laterality_flip == "findings" else ["findings", "impression"]
            violations_out.append(vio.labelled("laterality_contradiction", part=opts.laterality_part, between=between,
                                               ordered=next((rp.side for rp in report_parts if rp.side), None), sides=sides))

        for vid in chosen_v:
            if vid in ("part_mismatch", "sex_contradiction", "laterality_contradiction"):
                continue
            detail = dict(tl.details.get(vid, {}))
            if vid.startswith("id_"):
                detail["id_status"] = ident.id_status
            if vid.startswith("phone_"):
                detail["phone_status"] = ident.phone_status
            if vid == "same_doctor":
                detail["doctor"] = report_doctor
            violations_out.append(vio.labelled(vid, **detail))

        # 11. records
        record = {
            "accession_number": accession,
            "hospital_code": hospital.code,
            "patient_id": patient_id,
            "patient_name": ident.name,
            "patient_sex": ident.sex,
            "patient_birth_date": ident.birth_date.isoformat(),
            "id_number": ident.id_number,
            "phone": ident.phone,
            "modality": modality,
            "exam_items": order.exam_items,
            "urgency": urgency,
            **tl.record(),
            "technician": technician,
            "report_doctor": report_doctor,
            "review_doctor": review_doctor,
            "findings": report.findings,
            "impression": report.impression,
            "index_string": index_string(
                id_number=ident.id_number or patient_id, exam_time=exam_time,
                part=imaged[0].item.part if imaged else modality, device_serial=device.serial, org_code=hospital.code,
            ),
        }
        charge_records = []
        for k, ln in enumerate(billing.lines):
            rec = ln.record(accession)
            rec["hospital_code"] = hospital.code
            rec["charge_id"] = f"{accession}-{k + 1:02d}"
            charge_records.append(rec)
        malformed_record = rng.choice(MALFORMED_RECORD_KINDS) if rng.random() < prof["malformed_record_rate"] else None
        malformed_file = rng.choice(MALFORMED_FILE_KINDS) if rng.random() < prof["malformed_file_rate"] else None

        plan = ExamPlan(
            exam_key=exam_key, index=index, hospital=hospital, identity=ident, patient_id=patient_id,
            accession=accession, modality=modality, urgency=urgency, order=order, imaged=imaged, device=device,
            timeline=tl, spec=spec, report=report, billing=billing, violations=violations_out,
            irregularities=irregularities, exam_record=record, charge_records=charge_records, technician=technician,
            report_doctor=report_doctor, review_doctor=review_doctor, facts=facts,
            malformed_record=malformed_record, malformed_file=malformed_file, same_person_as=same_person_as,
        )
        self.plans.append(plan)
        return plan

    # pieces ---------------------------------------------------------------------------------
    def _extra_part(self, rng: random.Random, imaged: list[OrderedItem]) -> OrderedItem | None:
        """A part billed but not imaged (F7): a neighbouring part of the same modality and method."""
        have = {oi.item.part for oi in imaged}
        first = imaged[0].item
        neighbours = {"胸部": ["上腹部"], "上腹部": ["下腹部", "胸部"], "下腹部": ["盆腔"], "盆腔": ["下腹部"],
                      "颅脑": ["颈部软组织"], "颈椎": ["胸椎"], "胸椎": ["腰椎"], "腰椎": ["胸椎"],
                      "颈部软组织": ["胸部"], "膝关节": []}
        for part in neighbours.get(first.part, []):
            if part in have:
                continue
            for it in standard_items().values():
                if it.modality == first.modality and it.part == part and it.method == first.method:
                    return OrderedItem(it, None)
        return None

    def _mismatch_part(self, rng: random.Random, modality: str, parts: list[ReportPart]) -> tuple[int, ReportPart] | None:
        """Swap one report part for a part of the same modality that was not imaged."""
        have = {rp.part for rp in parts}
        options = [it for it in standard_items().values() if it.modality == modality and it.part not in have
                   and it.part in load("reports")["parts"]]
        if not options:
            return None
        it = rng.choice(options)
        side = rng.choice(("L", "R")) if it.lateral else None
        k = rng.randrange(len(parts))
        return k, ReportPart(it.part, modality, ("左" if side == "L" else "右" if side == "R" else "") + it.name_zh, side)

    def _spec(self, rng: random.Random, exam_key: str, modality: str, imaged: list[OrderedItem], acquisition: str,
              device: Device, fid: str | None, partner: ExamPlan | None, ident: Identity, hospital: Hospital,
              patient_id: str, accession: str, exam_time: datetime, order: WrittenOrder, technician: str,
              duration: float, urgency: str, index: int) -> tuple[ImagingSpec, dict[str, Any]]:
        prof = self.profile
        regions = sorted({oi.item.region for oi in imaged}, key=REGION_ORDER.index)
        roles = _roles(imaged, acquisition if len(regions) > 1 else "separate")
        phases: list[str] = []
        for oi in imaged:
            for ph in oi.item.phases:
                if ph not in phases:
                    phases.append(ph)
        contrast = any(oi.item.enhanced for oi in imaged) or len(phases) > 1
        if fid == "F5":
            phases = ["native"]
            contrast = False
            roles = [r for r in roles if not r.params.get("contrast")]
        if fid == "F10":
            roles = [r for r in roles if not _is_derived(r)]
        recon_lost: list[str] = []
        if fid == "F11":
            dropped = [r for r in roles if _is_thin(r)]
            roles = [r for r in roles if not _is_thin(r)]
            if not any(r.role.startswith("axial") for r in roles):
                roles.insert(1, SeriesRole("axial_soft_thick", {"thickness_mm": 5.0, "kernel": "soft"}))
            recon_lost = _lost_kernels(dropped, roles) if modality == "CT" else []
        if modality == "CT" and fid not in ("F10",) and rng.random() < 0.25 and not any(r.role == "vr" for r in roles):
            roles.insert(len(roles) - 1, SeriesRole("vr", {}))
        spectral = modality == "CT" and device.spectral and fid != "F12" and rng.random() < 0.3
        gating = (modality == "CT" and fid != "F13" and any(oi.item.part == "胸部" and oi.item.price == "ct_plain" for oi in imaged)
                  and rng.random() < 0.08)
        views = [r.role for r in roles] if modality == "DX" else []
        facts: dict[str, Any] = {
            "contrast": contrast,
            "thin_series": any(_is_thin(r) for r in roles),
            "derived_series": any(_is_derived(r) for r in roles),
            "spectral": spectral,
            "ecg_gating": gating,
            "mobile_device": device.mobile if modality == "DX" else None,
            "views": views,
            "special_techniques": sorted({r.role for r in roles if r.role in ("DWI", "SWI")}),
        }
        evidence = dict(facts)
        # the same facts under the renderer's evidence keys (datasets/synthetic/imaging)
        evidence.update({"contrast_absent": not contrast, "thin_slices": facts["thin_series"],
                         "derived": facts["derived_series"]})

        # image defects
        defects: list[Defect] = []
        if partner is not None and fid == "F1":
            defects = [Defect(d.dimension, d.value, dict(d.params)) for d in partner.spec.defects]
            roles = [SeriesRole(r.role, dict(r.params)) for r in partner.spec.series]
            phases = list(partner.spec.phases)
            evidence = {k: v for k, v in partner.spec.evidence.items() if k not in ("reuse_pixels_from", "device_overlap_with")}
            facts = dict(partner.facts)
        elif rng.random() < prof["defect_rate"]:
            required = sorted({s for oi in imaged for s in oi.item.required})
            present = {r.role for r in roles}
            required = [s for s in required if s in present]
            defects = draw_defects(rng, modality, regions, required, rng.randint(1, prof["max_defects"]),
                                   dimension_weights=prof.get("dimension_weights"))
        if recon_lost:
            # F11 dropped the only lung/bone-kernel reconstruction: by the item's standard that is
            # a reconstruction deviation (chest: lung kernel + thin <= 1.5 mm; head and spine: bone
            # kernel). Only the truth gains it; no random draw is consumed (generator 0.1.9).
            defects.append(Defect("reconstruction", "deviation", {"kind": "recon_series_missing", "kernel_classes": recon_lost,
                                                                  "kernel_zh": "、".join(KERNEL_ZH[k] for k in recon_lost)}))
        if partner is not None and fid == "F1":
            evidence["reuse_pixels_from"] = partner.exam_key
        if partner is not None and fid == "F3":
            evidence["device_overlap_with"] = partner.exam_key

        # header and its noise
        header = _header(hospital, ident, patient_id, accession, exam_time, order, device, technician, imaged, duration, index)
        header["urgency"] = urgency
        if contrast:
            header["ContrastBolusAgent"] = rng.choice(["碘海醇", "Iohexol 350", "碘帕醇370", "Omnipaque"]) if modality == "CT" else "Gd-DTPA"
        noise: dict[str, Any] = {}
        hn = prof["header_noise"]
        if rng.random() < hn["body_part_wrong"]:
            wrong = [b for b in ("CHEST", "ABDOMEN", "HEAD", "PELVIS", "LSPINE", "EXTREMITY", "WHOLEBODY") if b != header["BodyPartExamined"]]
            noise["body_part_wrong"] = rng.choice(wrong)
        elif rng.random() < hn["body_part_missing"]:
            noise["body_part_missing"] = True
        if rng.random() < hn["description_wrong"]:
            noise["description_wrong"] = True
        if rng.random() < hn["protocol_pinyin"]:
            noise["protocol_pinyin"] = True
        ts = _weighted_key(rng, prof["transfer_syntaxes"])
        spec = ImagingSpec(
            exam_key=exam_key,
            seed=derive_seed(self.seed, "imaging", index),
            modality=modality,  # type: ignore[arg-type]
            regions=regions if partner is None or fid != "F1" else list(partner.spec.regions),
            size=self.size,  # type: ignore[arg-type]
            vendor=device.vendor,
            sex=ident.sex,
            age=ident.age_at(exam_time.date()),
            phases=phases,
            acquisition=acquisition if len(regions) > 1 else "separate",  # type: ignore[arg-type]
            series=roles,
            defects=defects,
            header=header,
            header_noise=noise,
            evidence=evidence,
            burned_in_identifiers=rng.random() < prof["burned_in_rate"],
            transfer_syntax=ts,
        )
        return spec, facts


def plan_set(seed: int, n: int, profile_name: str = "mixed", size: str = "small") -> list[ExamPlan]:
    """Plan ``n`` exams deterministically from ``seed``."""
    planner = Planner(seed, profile_name, size, n_hint=n)
    return [planner.plan(i) for i in range(n)]
