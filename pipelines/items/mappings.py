"""Per-hospital confirmed mappings and the human review queue, on the catalogue tables.

Each hospital writes its items its own way; a reviewer who confirms ``头颅平扫（64排）`` at
hospital H as ``CT.HEAD.PLAIN`` should never be asked again. So:

* :class:`MappingTable` — a snapshot of confirmed ``ItemMapping`` rows, looked up *before*
  any parsing: hospital + local code, then hospital + normalised name, then the region's
  generated institution code (``region_code``), then region-wide rows (``hospital_id`` NULL);
* :func:`enqueue` — a low-confidence result becomes (or counts again on) the one open
  ``ItemReview`` row of its hospital + normalised name;
* :func:`confirm` / :func:`reject` — the reviewer's decision; a confirmation writes an
  ``ItemMapping`` (source ``review``) so the next normalisation of that name at that hospital
  returns the confirmed items with source ``hospital_mapping`` and confidence 1.0;
* :func:`import_csv` — a region loads its existing tables (hospital, local_code, local_name,
  region_code, standard codes).

Sessions are the caller's (a CLI transaction or the runner's projection transaction).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.pipelines.items.normalise import LATERALITIES, name_key

#: Separators between several standard codes in one CSV cell.
CODE_SEPARATORS = (";", "|", "；", "+", ",")


class MappingError(ValueError):
    """A decision or import row that cannot be applied (bilingual message)."""


def parse_codes(text: str | Iterable[str]) -> list[dict[str, Any]]:
    """``"CT.HEAD.PLAIN;MR.KNEE.PLAIN:左"`` (or a list of such) -> [{"code", "laterality"}]; validated."""
    from radqc import vocab

    parts: list[str] = []
    for chunk in ([text] if isinstance(text, str) else list(text)):
        work = str(chunk)
        for sep in CODE_SEPARATORS[1:]:
            work = work.replace(sep, CODE_SEPARATORS[0])
        parts += [p.strip() for p in work.split(CODE_SEPARATORS[0]) if p.strip()]
    out: list[dict[str, Any]] = []
    for p in parts:
        raw_code, _, raw_side = p.replace("：", ":").partition(":")
        code = raw_code.strip().upper()
        side: str | None = raw_side.strip() or None
        try:
            it = vocab.item(code)
        except KeyError as exc:
            raise MappingError(str(exc.args[0]) if exc.args else f"unknown code {code}") from None
        if side is not None and side not in LATERALITIES:
            raise MappingError(f"侧别只能是 左/右/双侧 / laterality must be one of 左, 右, 双侧: {side!r}")
        if side is not None and not it.lateral:
            raise MappingError(f"{code} 不分侧别 / {code} is not a lateral item, drop ':{side}'")
        out.append({"code": it.code, "laterality": side})
    if not out:
        raise MappingError("至少需要一个标准编码 / at least one standard code is needed")
    return out


def hospital_id(session: Session, code: str | None, *, create: bool = False) -> int | None:
    """The catalogue id of hospital ``code`` (created on demand when ``create``)."""
    if not code:
        return None
    found = session.scalar(select(m.Hospital.id).where(m.Hospital.code == code))
    if found is None and create:
        row = m.Hospital(code=code)
        session.add(row)
        session.flush()
        return int(row.id)
    return int(found) if found is not None else None


@dataclass
class MappingTable:
    """Confirmed mappings in memory: (hospital, key) -> entries; lookups never touch the database."""

    by_code: dict[tuple[str | None, str], tuple[list[dict[str, Any]], str]] = field(default_factory=dict)
    by_name: dict[tuple[str | None, str], tuple[list[dict[str, Any]], str]] = field(default_factory=dict)
    by_region: dict[str, tuple[list[dict[str, Any]], str]] = field(default_factory=dict)
    version: str = "0"

    @classmethod
    def load(cls, session: Session, hospital: str | None = None) -> MappingTable:
        """Confirmed rows of ``hospital`` plus region-wide rows (all hospitals when None)."""
        codes = dict(session.execute(select(m.Hospital.id, m.Hospital.code)).all())
        q = select(m.ItemMapping).where(m.ItemMapping.status == "confirmed").order_by(m.ItemMapping.id)
        if hospital is not None:
            hid = codes_inv(codes).get(hospital)
            q = q.where((m.ItemMapping.hospital_id.is_(None)) | (m.ItemMapping.hospital_id == hid))
        table = cls()
        for row in session.scalars(q):
            hosp = codes.get(row.hospital_id) if row.hospital_id is not None else None
            entries = [dict(e) for e in (row.standard_items or [])]
            how = f"mapping #{row.id} ({row.source}{', ' + row.confirmed_by if row.confirmed_by else ''})"
            if row.local_code:
                table.by_code[(hosp, row.local_code)] = (entries, how + f" local code {row.local_code}")
            if row.name_key:
                table.by_name[(hosp, row.name_key)] = (entries, how + f" name '{row.local_name}'")
            if row.region_code:
                table.by_region[row.region_code] = (entries, how + f" region code {row.region_code}")
        table.version = mapping_version(session, hospital)
        return table

    def lookup(self, hospital: str | None, local_code: str | None, name_key: str) -> tuple[list[dict[str, Any]], str] | None:
        """Hospital + local code, hospital + name, region code, then region-wide code and name."""
        if local_code:
            hit = self.by_code.get((hospital, local_code)) or self.by_region.get(local_code)
            if hit:
                return hit
        if name_key:
            hit = self.by_name.get((hospital, name_key))
            if hit:
                return hit
        if local_code and (None, local_code) in self.by_code:
            return self.by_code[(None, local_code)]
        if name_key and (None, name_key) in self.by_name:
            return self.by_name[(None, name_key)]
        return None


def codes_inv(codes: dict[int, str]) -> dict[str, int]:
    return {v: k for k, v in codes.items()}


def mapping_version(session: Session, hospital: str | None = None) -> str:
    """Count, newest change and id sum of confirmed mappings: changes whenever one is confirmed."""
    q = select(func.count(m.ItemMapping.id), func.max(m.ItemMapping.updated_at), func.sum(m.ItemMapping.id))
    if hospital is not None:
        hid = hospital_id(session, hospital)
        q = q.where((m.ItemMapping.hospital_id.is_(None)) | (m.ItemMapping.hospital_id == hid))
    n, newest, ids = session.execute(q).one()
    raw = f"{n}|{newest.isoformat() if newest else '-'}|{ids or 0}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _candidates(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"code": i["code"], "name": i["name"], "laterality": i.get("laterality"),
             "confidence": i["confidence"], "source": i["source"]} for i in result.get("items", [])]


def _reason(result: dict[str, Any]) -> str:
    status = result.get("status")
    tail = [e for e in result.get("evidence", []) if "/" in e][-3:]
    return f"{status}: " + " | ".join(tail) if tail else str(status)


def enqueue(session: Session, result: dict[str, Any], *, hospital: str | None, local_code: str | None = None,
            exam_id: int | None = None, count: bool = True) -> m.ItemReview | None:
    """Put a result that needs review on the queue: one open row per hospital + name, counted."""
    if not result.get("needs_review"):
        return None
    key = result.get("name_key") or name_key(result.get("input", ""))
    if not key:
        return None
    hid = hospital_id(session, hospital, create=True)
    row = session.scalar(select(m.ItemReview).where(
        m.ItemReview.hospital_id.is_(None) if hid is None else m.ItemReview.hospital_id == hid,
        m.ItemReview.name_key == key, m.ItemReview.status == "open"))
    if row is None:
        row = m.ItemReview(hospital_id=hid, local_code=local_code, local_name=str(result.get("input", ""))[:512],
                           name_key=key, candidates=_candidates(result), reason=_reason(result), status="open",
                           occurrences=1, first_exam_id=exam_id)
        session.add(row)
        session.flush()
        return row
    if count:
        row.occurrences = int(row.occurrences or 0) + 1
    row.candidates = _candidates(result)
    if local_code and not row.local_code:
        row.local_code = local_code
    return row


def _review(session: Session, review_id: int) -> m.ItemReview:
    row = session.get(m.ItemReview, review_id)
    if row is None:
        raise MappingError(f"没有这条待审核记录 / no review #{review_id}")
    if row.status != "open":
        raise MappingError(f"待审核记录 #{review_id} 已处理（{row.status}）/ review #{review_id} is already {row.status}")
    return row


def confirm(session: Session, review_id: int, codes: str | Iterable[str], *, by: str | None = None,
            note: str | None = None) -> m.ItemMapping:
    """Confirm a review with standard codes (``CODE[:左|右|双侧]``): writes the hospital's mapping."""
    entries = parse_codes(codes)
    row = _review(session, review_id)
    now = datetime.now(UTC)
    mapping = _upsert(session, hospital_id=row.hospital_id, local_code=row.local_code, local_name=row.local_name,
                      key=row.name_key, region_code=None, entries=entries, source="review", by=by, note=note)
    row.status, row.decision, row.resolved_by, row.resolved_at = "confirmed", entries, by, now
    session.flush()
    return mapping


def reject(session: Session, review_id: int, *, by: str | None = None, note: str | None = None) -> m.ItemReview:
    """Reject a review (not an exam item, or not to be mapped); nothing is written to the mappings."""
    row = _review(session, review_id)
    row.status, row.resolved_by, row.resolved_at = "rejected", by, datetime.now(UTC)
    row.decision = [{"rejected": True, "note": note}] if note else []
    session.flush()
    return row


def _upsert(session: Session, *, hospital_id: int | None, local_code: str | None, local_name: str | None, key: str | None,
            region_code: str | None, entries: list[dict[str, Any]], source: str, by: str | None,
            note: str | None) -> m.ItemMapping:
    """One confirmed row per hospital + local code (or + name when there is no code); replaced on change."""
    hosp = m.ItemMapping.hospital_id.is_(None) if hospital_id is None else m.ItemMapping.hospital_id == hospital_id
    q = select(m.ItemMapping).where(hosp, m.ItemMapping.status == "confirmed")
    q = q.where(m.ItemMapping.local_code == local_code) if local_code else q.where(m.ItemMapping.name_key == key)
    row = session.scalar(q)
    if row is None:
        row = m.ItemMapping(hospital_id=hospital_id, local_code=local_code)
        session.add(row)
    row.local_name = local_name
    row.name_key = key
    row.region_code = region_code or row.region_code
    row.standard_items = entries
    row.source = source
    row.confirmed_by = by
    row.note = note
    row.status = "confirmed"
    row.updated_at = datetime.now(UTC)
    session.flush()
    return row


def import_csv(session: Session, path: str | Path, *, by: str | None = None) -> dict[str, Any]:
    """Load a region's mapping table: columns hospital, local_code, local_name, region_code, standard_codes.

    ``standard_codes`` holds one or more ``CODE[:左|右|双侧]`` separated by ``;`` ``|`` or ``+``.
    An empty ``hospital`` makes a region-wide row. Bad rows are reported, never half-applied.
    """
    imported = 0
    errors: list[dict[str, Any]] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        needed = {"hospital", "local_code", "local_name", "region_code", "standard_codes"}
        missing = needed - set(reader.fieldnames or [])
        if missing:
            raise MappingError(f"CSV 缺少列 / CSV lacks columns: {sorted(missing)} (needs {sorted(needed)})")
        for line_no, rec in enumerate(reader, start=2):
            try:
                entries = parse_codes(rec.get("standard_codes") or "")
            except MappingError as exc:
                errors.append({"line": line_no, "error": str(exc)})
                continue
            name = (rec.get("local_name") or "").strip() or None
            code = (rec.get("local_code") or "").strip() or None
            if not name and not code:
                errors.append({"line": line_no, "error": "需要院内编码或名称 / local_code or local_name is needed"})
                continue
            hid = hospital_id(session, (rec.get("hospital") or "").strip() or None, create=True)
            _upsert(session, hospital_id=hid, local_code=code, local_name=name, key=name_key(name) if name else None,
                    region_code=(rec.get("region_code") or "").strip() or None, entries=entries, source="import",
                    by=by, note=f"imported from {Path(path).name}")
            imported += 1
    return {"imported": imported, "errors": errors}


def review_rows(session: Session, *, hospital: str | None = None, status: str | None = "open") -> list[dict[str, Any]]:
    """The review queue as plain dicts (most frequent first)."""
    codes: dict[int | None, str] = dict(session.execute(select(m.Hospital.id, m.Hospital.code)).all())
    q = select(m.ItemReview)
    if status:
        q = q.where(m.ItemReview.status == status)
    if hospital:
        q = q.where(m.ItemReview.hospital_id == hospital_id(session, hospital))
    q = q.order_by(m.ItemReview.occurrences.desc(), m.ItemReview.id)
    return [{"id": r.id, "hospital": codes.get(r.hospital_id), "local_code": r.local_code, "local_name": r.local_name,
             "name_key": r.name_key, "status": r.status, "occurrences": r.occurrences, "candidates": r.candidates,
             "reason": r.reason, "decision": r.decision, "resolved_by": r.resolved_by,
             "resolved_at": r.resolved_at, "first_exam_id": r.first_exam_id, "created_at": r.created_at}
            for r in session.scalars(q)]


def mapping_rows(session: Session, *, hospital: str | None = None) -> list[dict[str, Any]]:
    """Confirmed mappings as plain dicts."""
    codes: dict[int | None, str] = dict(session.execute(select(m.Hospital.id, m.Hospital.code)).all())
    q = select(m.ItemMapping).where(m.ItemMapping.status == "confirmed")
    if hospital:
        q = q.where(m.ItemMapping.hospital_id == hospital_id(session, hospital))
    return [{"id": r.id, "hospital": codes.get(r.hospital_id), "local_code": r.local_code, "region_code": r.region_code,
             "local_name": r.local_name, "name_key": r.name_key, "standard_items": r.standard_items,
             "source": r.source, "confirmed_by": r.confirmed_by, "updated_at": r.updated_at}
            for r in session.scalars(q.order_by(m.ItemMapping.id))]
