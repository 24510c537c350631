"""Images: DICOMweb (QIDO-RS, WADO-RS) over the catalogue, and the web viewer's stack helpers.

Every route needs ``image.read`` (original download: ``image.download_original`` too) and goes
through the exam scope (:mod:`radqc.serving.security.scope`): a study outside the caller's
scope answers 404 exactly like a missing one, and is never listed by a search.

* QIDO-RS answers come from catalogue rows (no file is read for a search).
* WADO-RS metadata reads the stored DICOM headers (the catalogue keeps no identifiers) and
  hides patient identifiers from callers without ``patient.identity``.
* Frames are the decoded stored values as Explicit VR Little Endian bytes (archived instances
  are JPEG-LS in the store; every client gets the same uncompressed frames).
* Rendered images apply window/level on the server and carry the viewer's identity as a
  watermark on other hospitals' exams (可见不可存, ``settings.watermark``).

UIDs in paths must be DICOM UIDs (digits and dots, at most 64 characters): anything else,
such as a traversal attempt, is refused by validation (422) before any lookup.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from radqc.catalogue import models as m
from radqc.serving import accesslog
from radqc.serving.imaging import dicomjson, render
from radqc.serving.imaging.pixels import Decoded, PixelCache, PixelError, cache_for
from radqc.serving.security.deps import db, require, service
from radqc.serving.security.principal import Principal
from radqc.serving.security.scope import exam_scope_clause, is_other_hospital

router = APIRouter(tags=["images / 影像"])

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
FRAMES_PATTERN = r"^[0-9]{1,6}(,[0-9]{1,6}){0,999}$"
DICOM_JSON = "application/dicom+json"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
QIDO_MAX_LIMIT = 1000
NOT_FOUND = "not found / 未找到"
DATE_RANGE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")
THUMBNAIL_PX = 128
MAX_ID = 2**31 - 1  # catalogue ids are 32-bit integers on PostgreSQL
HTTP_422 = 422  # Unprocessable Content (Starlette renamed the constant; the number is stable)
INCLUDEFIELD_DOC = ("accepted for PS3.18 clients; every attribute the catalogue holds is always returned "
                    "(a search reads no file)")

Uid = Annotated[str, Path(pattern=UID_PATTERN, max_length=64, description="DICOM UID")]


# -- lookups (every one scoped) -------------------------------------------------------------------


@dataclass(frozen=True)
class StudyRef:
    exam: m.Exam
    pseudonym: str | None
    identifiers_enc: bytes | None


def _not_found() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND)


def _study(session: Session, principal: Principal, study_uid: str) -> StudyRef:
    row = session.execute(
        select(m.Exam, m.Patient.pseudo_key, m.Patient.identifiers_enc)
        .outerjoin(m.Patient, m.Patient.id == m.Exam.patient_id)
        .where(m.Exam.study_instance_uid == study_uid, exam_scope_clause(principal))
    ).first()
    if row is None:
        raise _not_found()
    return StudyRef(row[0], row[1], row[2])


def _series(session: Session, exam: m.Exam, series_uid: str) -> m.Series:
    series = session.scalar(select(m.Series).where(m.Series.exam_id == exam.id,
                                                   m.Series.series_instance_uid == series_uid))
    if series is None:
        raise _not_found()
    return series


def newest_instances(session: Session, series_ids: Sequence[int], sop_uid: str | None = None) -> list[m.Instance]:
    """The newest stored version of each SOP instance of the series (older versions never shown),
    in (series, InstanceNumber, id) order: the order the pipeline runner hands instances to stages."""
    if not series_ids:
        return []
    newer = aliased(m.Instance)
    newest = (select(func.max(newer.version)).where(newer.sop_instance_uid == m.Instance.sop_instance_uid)
              .correlate(m.Instance).scalar_subquery())
    query = select(m.Instance).where(m.Instance.series_id.in_(series_ids), m.Instance.version == newest)
    if sop_uid is not None:
        query = query.where(m.Instance.sop_instance_uid == sop_uid)
    rows = session.scalars(query.order_by(m.Instance.series_id, m.Instance.instance_number, m.Instance.id)).all()
    return list(rows)


def _instance(session: Session, series: m.Series, sop_uid: str) -> m.Instance:
    rows = newest_instances(session, [series.id], sop_uid)
    if not rows:
        raise _not_found()
    return rows[0]


def _scoped_series(session: Session, principal: Principal, series_id: int) -> tuple[m.Series, m.Exam]:
    row = session.execute(select(m.Series, m.Exam).join(m.Exam, m.Exam.id == m.Series.exam_id)
                          .where(m.Series.id == series_id, exam_scope_clause(principal))).first()
    if row is None:
        raise _not_found()
    return row[0], row[1]


def _scoped_instance(session: Session, principal: Principal, instance_id: int) -> tuple[str, int | None]:
    """(object key, exam hospital id) of an instance in scope: only the two columns a rendered
    frame needs (the viewer asks for hundreds; the full rows with their JSON header cost 3x)."""
    row = session.execute(select(m.Instance.storage_key, m.Exam.hospital_id)
                          .join(m.Series, m.Series.id == m.Instance.series_id)
                          .join(m.Exam, m.Exam.id == m.Series.exam_id)
                          .where(m.Instance.id == instance_id, exam_scope_clause(principal))).first()
    if row is None:
        raise _not_found()
    return str(row[0]), row[1]


# -- stack order ----------------------------------------------------------------------------------


class _HeaderView:
    """A catalogue instance seen through the attributes ``sort_datasets`` reads from a data set."""

    def __init__(self, instance: m.Instance) -> None:
        self.instance = instance
        self._header = instance.header or {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = self.get(name)
        if value is None:
            raise AttributeError(name)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        if name == "InstanceNumber":
            return self.instance.instance_number
        return self._header.get(name, default)


def stack_order(instances: Sequence[m.Instance]) -> list[m.Instance]:
    """Slice order: position along the slice normal, else InstanceNumber — image QC's own helper
    (``sort_datasets``), so ``instance_index`` in QC evidence is the index in this list."""
    from radqc.pipelines.image_qc.exam import sort_datasets

    return [view.instance for view in sort_datasets([_HeaderView(i) for i in instances])]


def _normal_position(header: dict[str, Any]) -> float | None:
    try:
        iop = [float(v) for v in header["ImageOrientationPatient"]]
        pos = [float(v) for v in header["ImagePositionPatient"]]
    except (KeyError, TypeError, ValueError):
        return None
    if len(iop) != 6 or len(pos) != 3:
        return None
    return round(float(np.dot(np.cross(iop[:3], iop[3:]), pos)), 3)


# -- helpers ----------------------------------------------------------------------------------------


def _cache(request: Request) -> PixelCache:
    return cache_for(request.app.state, service(request).workspace.store)


def _decoded(request: Request, storage_key: str) -> Decoded:
    try:
        return _cache(request).get(storage_key)
    except PixelError as exc:
        raise HTTPException(HTTP_422, detail=str(exc)) from exc
    except (OSError, KeyError, ValueError, EOFError) as exc:  # object missing or not DICOM: the object store's problem
        raise HTTPException(HTTP_422, detail=f"stored instance unreadable / 存储的实例无法读取: {type(exc).__name__}") \
            from exc


def _log(request: Request, principal: Principal, action: str, exam_id: int, outcome: str = "ok",
         detail: dict[str, Any] | None = None) -> None:
    accesslog.record(service(request).workspace.sessions, action=action, user_id=principal.user_id,
                     username=principal.username, role=principal.role.name, exam_id=exam_id,
                     target=str(request.url.path), client=principal.client, outcome=outcome, detail=detail)


def _dicomweb_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


def _identifiers(request: Request, enc: bytes | None) -> dict[str, Any]:
    if not enc:
        return {}
    try:
        return service(request).workspace.vault.decrypt(enc)
    except Exception:  # noqa: BLE001 - an unreadable vault entry shows no identity, never a 500
        return {}


def _patient_pairs(request: Request, principal: Principal, pseudonym: str | None,
                   enc: bytes | None) -> list[tuple[str, Any]]:
    if principal.can("patient.identity"):
        ids = _identifiers(request, enc)
        return [("PatientName", ids.get("patient_name")), ("PatientID", ids.get("patient_id") or pseudonym)]
    return [("PatientName", pseudonym), ("PatientID", pseudonym)]


def _watermark(request: Request, principal: Principal, hospital_id: int | None) -> tuple[str, str, str] | None:
    """(identity, ASCII identity, time) when this view must be stamped (another hospital's exam)."""
    if not service(request).settings.watermark or not is_other_hospital(principal, hospital_id):
        return None
    where = f"@{principal.hospital_code}" if principal.hospital_code else ""
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return principal.identity, f"{principal.username}{where}", at


def _json(content: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(content, media_type=DICOM_JSON, headers=headers)


def _date_range(value: str | None) -> tuple[datetime | None, datetime | None]:
    """QIDO StudyDate: ``YYYYMMDD``, ``A-B``, ``A-`` or ``-B`` -> UTC datetime bounds; 400 otherwise."""
    if not value:
        return None, None
    match = DATE_RANGE.match(value.strip())
    if match is None or not (match.group(1) or match.group(3)):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="StudyDate must be YYYYMMDD or a range A-B / "
                                                                "StudyDate 应为 YYYYMMDD 或范围")
    try:
        lo = datetime.strptime(match.group(1), "%Y%m%d").date() if match.group(1) else None
        hi = datetime.strptime(match.group(3), "%Y%m%d").date() if match.group(3) else None
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="StudyDate is not a date / StudyDate 不是有效日期") \
            from None
    if not match.group(2):
        hi = lo
    start = datetime.combine(lo, time.min, tzinfo=UTC) if isinstance(lo, date) else None
    end = datetime.combine(hi, time.max, tzinfo=UTC) if isinstance(hi, date) else None
    return start, end


def _uids(value: str | None) -> list[str] | None:
    if not value:
        return None
    out = [v.strip() for v in value.replace("\\", ",").split(",") if v.strip()]
    if not out:  # a UID filter made of separators only is a malformed query, never "no filter"
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="empty UID list / UID 列表为空")
    for uid in out:
        if len(uid) > 64 or not re.match(UID_PATTERN, uid):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="invalid UID / UID 格式错误")
    return out


def _like_value(value: str) -> tuple[str, bool]:
    """QIDO wildcard matching (``*``, ``?``) -> a LIKE pattern (escaped) and whether it is one."""
    if "*" not in value and "?" not in value:
        return value, False
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_"), True


# -- QIDO-RS ------------------------------------------------------------------------------------------


@router.get("/dicomweb/studies", summary="QIDO-RS: search studies / 检索检查",
            responses={200: {"content": {DICOM_JSON: {}}}})
def search_studies(
    request: Request,
    principal: Principal = Depends(require("image.read")),
    session: Session = Depends(db),
    study_uid: str | None = Query(None, alias="StudyInstanceUID", max_length=4096),
    modality: str | None = Query(None, alias="ModalitiesInStudy", max_length=64),
    study_date: str | None = Query(None, alias="StudyDate", max_length=17),
    accession: str | None = Query(None, alias="AccessionNumber", max_length=64),
    includefield: list[str] | None = Query(None, max_length=64, description=INCLUDEFIELD_DOC),
    fuzzymatching: bool = Query(False),
    limit: int = Query(100, ge=1, le=QIDO_MAX_LIMIT),
    offset: int = Query(0, ge=0, le=10**9),
) -> Response:
    """Studies in the caller's scope matching the attributes (exact, or ``*``/``?`` wildcards for
    AccessionNumber), ordered by study time, newest first."""
    query = (select(m.Exam, m.Patient.pseudo_key, m.Patient.identifiers_enc, m.Patient.sex, m.Hospital.name,
                    m.Hospital.code)
             .outerjoin(m.Patient, m.Patient.id == m.Exam.patient_id)
             .outerjoin(m.Hospital, m.Hospital.id == m.Exam.hospital_id)
             .where(m.Exam.study_instance_uid.is_not(None), exam_scope_clause(principal)))
    uids = _uids(study_uid)
    if uids is not None:
        query = query.where(m.Exam.study_instance_uid.in_(uids))
    if modality:
        mods = [v.strip().upper() for v in modality.replace("\\", ",").split(",") if v.strip()]
        in_series = select(m.Series.id).where(m.Series.exam_id == m.Exam.id, m.Series.modality.in_(mods)).exists()
        query = query.where(or_(in_series, m.Exam.modality.in_(mods)))
    start, end = _date_range(study_date)
    if start is not None:
        query = query.where(m.Exam.exam_time >= start)
    if end is not None:
        query = query.where(m.Exam.exam_time <= end)
    if accession:
        pattern, wildcard = _like_value(accession)
        query = query.where(m.Exam.accession_number.like(pattern, escape="\\") if wildcard
                            else m.Exam.accession_number == pattern)
    rows = session.execute(query.order_by(m.Exam.exam_time.desc().nulls_last(), m.Exam.id.desc())
                           .limit(limit).offset(offset)).all()
    exam_ids = [r[0].id for r in rows]
    counts = _study_counts(session, exam_ids)
    base = _dicomweb_base(request)
    out = []
    for exam, pseudo, enc, sex, hospital_name, hospital_code in rows:
        n_series, n_instances, modalities = counts.get(exam.id, (0, 0, []))
        pairs: list[tuple[str, Any]] = [
            ("SpecificCharacterSet", "ISO_IR 192"),
            ("StudyDate", exam.exam_time.strftime("%Y%m%d") if exam.exam_time else None),
            ("StudyTime", exam.exam_time.strftime("%H%M%S") if exam.exam_time else None),
            ("AccessionNumber", exam.accession_number),
            ("ModalitiesInStudy", modalities or ([exam.modality] if exam.modality else [])),
            ("StudyDescription", exam.study_description),
            *_patient_pairs(request, principal, pseudo, enc),
            ("PatientSex", sex),
            ("StudyInstanceUID", exam.study_instance_uid),
            ("NumberOfStudyRelatedSeries", n_series),
            ("NumberOfStudyRelatedInstances", n_instances),
            ("InstitutionName", hospital_name or hospital_code),
            ("RetrieveURL", f"{base}/studies/{exam.study_instance_uid}"),
        ]
        out.append(dicomjson.build(pairs))
    return _json(out)


def _study_counts(session: Session, exam_ids: Sequence[int]) -> dict[int, tuple[int, int, list[str]]]:
    """Per exam: series count, newest-instance count, distinct series modalities."""
    if not exam_ids:
        return {}
    series_rows = session.execute(select(m.Series.exam_id, m.Series.id, m.Series.modality)
                                  .where(m.Series.exam_id.in_(exam_ids))).all()
    per_series = _instance_counts(session, [r[1] for r in series_rows])
    out: dict[int, tuple[int, int, list[str]]] = {}
    for exam_id, series_id, modality in series_rows:
        n_series, n_inst, mods = out.get(exam_id, (0, 0, []))
        if modality and modality not in mods:
            mods = sorted([*mods, modality])
        out[exam_id] = (n_series + 1, n_inst + per_series.get(series_id, 0), mods)
    return out


def _instance_counts(session: Session, series_ids: Sequence[int]) -> dict[int, int]:
    if not series_ids:
        return {}
    rows = session.execute(select(m.Instance.series_id, func.count(func.distinct(m.Instance.sop_instance_uid)))
                           .where(m.Instance.series_id.in_(series_ids)).group_by(m.Instance.series_id)).all()
    return {int(r[0]): int(r[1]) for r in rows}


@router.get("/dicomweb/studies/{study}/series", summary="QIDO-RS: search a study's series / 检索序列",
            responses={200: {"content": {DICOM_JSON: {}}}})
def search_series(
    request: Request,
    study: Uid,
    principal: Principal = Depends(require("image.read")),
    session: Session = Depends(db),
    series_uid: str | None = Query(None, alias="SeriesInstanceUID", max_length=4096),
    modality: str | None = Query(None, alias="Modality", max_length=16),
    series_number: int | None = Query(None, alias="SeriesNumber", ge=-(2**31), le=2**31 - 1),
    includefield: list[str] | None = Query(None, max_length=64, description=INCLUDEFIELD_DOC),
    limit: int = Query(QIDO_MAX_LIMIT, ge=1, le=QIDO_MAX_LIMIT),
    offset: int = Query(0, ge=0, le=10**9),
) -> Response:
    ref = _study(session, principal, study)
    query = select(m.Series).where(m.Series.exam_id == ref.exam.id)
    uids = _uids(series_uid)
    if uids is not None:
        query = query.where(m.Series.series_instance_uid.in_(uids))
    if modality:
        query = query.where(m.Series.modality == modality.upper())
    if series_number is not None:
        query = query.where(m.Series.series_number == series_number)
    rows = session.scalars(query.order_by(m.Series.series_number, m.Series.id).limit(limit).offset(offset)).all()
    counts = _instance_counts(session, [s.id for s in rows])
    base = _dicomweb_base(request)
    out = [dicomjson.build([
        ("SpecificCharacterSet", "ISO_IR 192"),
        ("StudyInstanceUID", study),
        ("Modality", s.modality),
        ("SeriesInstanceUID", s.series_instance_uid),
        ("SeriesNumber", s.series_number),
        ("SeriesDescription", s.description),
        ("BodyPartExamined", s.body_part),
        ("NumberOfSeriesRelatedInstances", counts.get(s.id, 0)),
        ("RetrieveURL", f"{base}/studies/{study}/series/{s.series_instance_uid}"),
    ]) for s in rows]
    return _json(out)


@router.get("/dicomweb/studies/{study}/series/{series}/instances",
            summary="QIDO-RS: search a series' instances / 检索实例", responses={200: {"content": {DICOM_JSON: {}}}})
def search_instances(
    request: Request,
    study: Uid,
    series: Uid,
    principal: Principal = Depends(require("image.read")),
    session: Session = Depends(db),
    sop_uid: str | None = Query(None, alias="SOPInstanceUID", max_length=4096),
    includefield: list[str] | None = Query(None, max_length=64, description=INCLUDEFIELD_DOC),
    limit: int = Query(QIDO_MAX_LIMIT, ge=1, le=QIDO_MAX_LIMIT * 10),
    offset: int = Query(0, ge=0, le=10**9),
) -> Response:
    ref = _study(session, principal, study)
    row = _series(session, ref.exam, series)
    instances = stack_order(newest_instances(session, [row.id]))
    uids = _uids(sop_uid)
    if uids is not None:
        instances = [i for i in instances if i.sop_instance_uid in uids]
    base = _dicomweb_base(request)
    out = []
    for inst in instances[offset:offset + limit]:
        header = inst.header or {}
        out.append(dicomjson.build([
            ("SpecificCharacterSet", "ISO_IR 192"),
            ("SOPClassUID", inst.sop_class_uid),
            ("SOPInstanceUID", inst.sop_instance_uid),
            ("StudyInstanceUID", study),
            ("SeriesInstanceUID", series),
            ("Modality", row.modality),
            ("InstanceNumber", inst.instance_number),
            ("Rows", header.get("Rows")),
            ("Columns", header.get("Columns")),
            ("NumberOfFrames", header.get("NumberOfFrames")),
            ("RetrieveURL", f"{base}/studies/{study}/series/{series}/instances/{inst.sop_instance_uid}"),
        ]))
    return _json(out)


# -- WADO-RS metadata -------------------------------------------------------------------------------------


def _metadata(request: Request, session: Session, principal: Principal, ref: StudyRef,
              series_rows: Iterable[m.Series], sop_uid: str | None = None) -> list[dict[str, Any]]:
    cache = _cache(request)
    base = _dicomweb_base(request)
    identity = principal.can("patient.identity")
    series_list = list(series_rows)
    by_id = {s.id: s for s in series_list}
    out = []
    for inst in newest_instances(session, list(by_id), sop_uid):
        s = by_id[inst.series_id]
        try:
            ds = cache.dataset(inst.storage_key, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - a missing/corrupt object is a 5xx-free error for the client
            raise HTTPException(HTTP_422,
                                detail=f"stored instance unreadable / 存储的实例无法读取: {type(exc).__name__}") from exc
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        url = f"{base}/studies/{ref.exam.study_instance_uid}/series/{s.series_instance_uid}/instances/" \
              f"{inst.sop_instance_uid}/frames/{','.join(str(i) for i in range(1, frames + 1))}"
        attrs = dicomjson.dataset_to_json(ds, pixel_uri=url)
        out.append(dicomjson.protect(attrs, identity=identity, pseudonym=ref.pseudonym))
    return out


@router.get("/dicomweb/studies/{study}/metadata", summary="WADO-RS: a study's metadata / 检查元数据",
            responses={200: {"content": {DICOM_JSON: {}}}})
def study_metadata(request: Request, study: Uid, principal: Principal = Depends(require("image.read")),
                   session: Session = Depends(db)) -> Response:
    ref = _study(session, principal, study)
    rows = session.scalars(select(m.Series).where(m.Series.exam_id == ref.exam.id)).all()
    content = _metadata(request, session, principal, ref, rows)
    _log(request, principal, "image.view", ref.exam.id, detail={"what": "study metadata"})
    return _json(content)


@router.get("/dicomweb/studies/{study}/series/{series}/metadata", summary="WADO-RS: a series' metadata / 序列元数据",
            responses={200: {"content": {DICOM_JSON: {}}}})
def series_metadata(request: Request, study: Uid, series: Uid, principal: Principal = Depends(require("image.read")),
                    session: Session = Depends(db)) -> Response:
    ref = _study(session, principal, study)
    row = _series(session, ref.exam, series)
    content = _metadata(request, session, principal, ref, [row])
    _log(request, principal, "image.view", ref.exam.id, detail={"what": "series metadata", "series_id": row.id})
    return _json(content)


@router.get("/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata",
            summary="WADO-RS: an instance's metadata / 实例元数据", responses={200: {"content": {DICOM_JSON: {}}}})
def instance_metadata(request: Request, study: Uid, series: Uid, instance: Uid,
                      principal: Principal = Depends(require("image.read")),
                      session: Session = Depends(db)) -> Response:
    ref = _study(session, principal, study)
    row = _series(session, ref.exam, series)
    content = _metadata(request, session, principal, ref, [row], instance)
    if not content:
        raise _not_found()
    _log(request, principal, "image.view", ref.exam.id, detail={"what": "instance metadata", "series_id": row.id})
    return _json(content)


# -- WADO-RS frames, rendered, original ------------------------------------------------------------------


def _accepts(accept: str | None, *media: str) -> bool:
    """Whether an Accept header allows one of ``media`` (absent, ``*/*`` and ``multipart/related``
    without a type all do)."""
    if not accept:
        return True
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        kind = parts[0].lower()
        params = {k.strip().lower(): v.strip().strip('"').lower() for k, _, v in (p.partition("=") for p in parts[1:])}
        if kind in ("*/*", "multipart/*", *media):
            return True
        if kind == "multipart/related" and params.get("type", "*/*") in ("*/*", *media):
            syntax = params.get("transfer-syntax", "*")
            if syntax in ("*", EXPLICIT_VR_LE) or "application/dicom" in media:
                return True
    return False


def _multipart(parts: Iterable[tuple[str, bytes]], part_type: str) -> Response:
    boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for content_type, payload in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("ascii"))
        chunks.append(payload)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return Response(b"".join(chunks),
                    media_type=f'multipart/related; type="{part_type}"; boundary={boundary}')


def _frame_numbers(text: str, n_frames: int) -> list[int]:
    numbers = [int(v) for v in text.split(",")]
    if any(n < 1 or n > n_frames for n in numbers):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"frame out of range 1..{n_frames} / 帧号超出范围")
    return numbers


@router.get("/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            summary="WADO-RS: frames (uncompressed, Explicit VR Little Endian) / 帧像素数据",
            responses={200: {"content": {"multipart/related": {}}}, 406: {"description": "not acceptable"}})
def retrieve_frames(request: Request, study: Uid, series: Uid, instance: Uid,
                    frames: Annotated[str, Path(pattern=FRAMES_PATTERN, max_length=7000)],
                    principal: Principal = Depends(require("image.read")),
                    session: Session = Depends(db)) -> Response:
    if not _accepts(request.headers.get("accept"), "application/octet-stream"):
        raise HTTPException(status.HTTP_406_NOT_ACCEPTABLE,
                            detail='frames are served as multipart/related; type="application/octet-stream" '
                                   f"(transfer syntax {EXPLICIT_VR_LE}) / 仅支持未压缩帧")
    ref = _study(session, principal, study)
    inst = _instance(session, _series(session, ref.exam, series), instance)
    decoded = _decoded(request, inst.storage_key)
    numbers = _frame_numbers(frames, decoded.n_frames)
    part_type = f"application/octet-stream; transfer-syntax={EXPLICIT_VR_LE}"
    return _multipart(((part_type, decoded.frame_bytes(n - 1)) for n in numbers), "application/octet-stream")


def _rendered(request: Request, principal: Principal, hospital_id: int | None, storage_key: str, frame: int,
              window: str | None, viewport: str | None, fmt: str | None) -> Response:
    try:
        win = render.parse_window(window)
        view = render.parse_viewport(viewport)
        kind = render.parse_format(fmt, request.headers.get("accept"))
    except render.RenderParameterError as exc:
        raise HTTPException(HTTP_422, detail=str(exc)) from exc
    stamp = _watermark(request, principal, hospital_id)
    cache = _cache(request)
    key = (storage_key, frame, win, view, kind, stamp)
    body = cache.rendered.get(key)
    if body is None:
        decoded = _decoded(request, storage_key)
        if not 0 <= frame < decoded.n_frames:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                detail=f"frame out of range 1..{decoded.n_frames} / 帧号超出范围")
        body = render.render(decoded, frame, window=win, viewport=view, fmt=kind, watermark=stamp)
        cache.rendered.put(key, body)
    return Response(body, media_type=render.MEDIA_TYPES[kind])


WindowQuery = Annotated[str | None, Query(max_length=64, description="center,width[,linear|linear-exact|sigmoid]")]
ViewportQuery = Annotated[str | None, Query(max_length=32, description="width,height (fit inside)")]
FormatQuery = Annotated[str | None, Query(max_length=8, description="png (default) or jpeg; else from Accept")]


@router.get("/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered",
            summary="WADO-RS: rendered instance (first frame) / 渲染图像",
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
def rendered_instance(request: Request, study: Uid, series: Uid, instance: Uid,
                      window: WindowQuery = None, viewport: ViewportQuery = None, format: FormatQuery = None,  # noqa: A002
                      principal: Principal = Depends(require("image.read")),
                      session: Session = Depends(db)) -> Response:
    ref = _study(session, principal, study)
    inst = _instance(session, _series(session, ref.exam, series), instance)
    return _rendered(request, principal, ref.exam.hospital_id, inst.storage_key, 0, window, viewport, format)


@router.get("/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
            summary="WADO-RS: rendered frame / 渲染帧", responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
def rendered_frame(request: Request, study: Uid, series: Uid, instance: Uid,
                   frame: Annotated[int, Path(ge=1, le=100_000)],
                   window: WindowQuery = None, viewport: ViewportQuery = None, format: FormatQuery = None,  # noqa: A002
                   principal: Principal = Depends(require("image.read")),
                   session: Session = Depends(db)) -> Response:
    ref = _study(session, principal, study)
    inst = _instance(session, _series(session, ref.exam, series), instance)
    return _rendered(request, principal, ref.exam.hospital_id, inst.storage_key, frame - 1, window, viewport, format)


DOWNLOAD_REFUSED = ("另一医院的检查可见不可存：不提供原始影像下载 / images of another hospital's exam can be viewed "
                    "but not downloaded (original download is off)")
ORIGINAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/dicom": {}, "multipart/related": {}}},
    403: {"description": "download not allowed / 不允许下载"}}


def _download_allowed(request: Request, principal: Principal, ref: StudyRef) -> None:
    """可见不可存: another hospital's originals only when the deployment allows it (403 + log otherwise)."""
    if is_other_hospital(principal, ref.exam.hospital_id) and not service(request).settings.allow_original_download:
        _log(request, principal, "image.download", ref.exam.id, outcome="denied",
             detail={"reason": "other hospital, original download off"})
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=DOWNLOAD_REFUSED)
    accept = request.headers.get("accept") or ""
    if accept and not _accepts(accept, "application/dicom"):
        raise HTTPException(status.HTTP_406_NOT_ACCEPTABLE, detail="application/dicom only / 仅支持 application/dicom")


def _original_bytes(request: Request, principal: Principal, ref: StudyRef, inst: m.Instance) -> bytes:
    """The stored object; for a caller without ``patient.identity`` a copy with identifiers replaced."""
    data = _cache(request).read_bytes(inst.storage_key)
    if principal.can("patient.identity"):
        return data
    import io

    import pydicom

    ds = dicomjson.protect_dataset(pydicom.dcmread(io.BytesIO(data)), pseudonym=ref.pseudonym)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@router.get("/dicomweb/studies/{study}/series/{series}/instances/{instance}",
            summary="WADO-RS: original instance (可见不可存: permission and policy) / 原始 DICOM",
            responses=ORIGINAL_RESPONSES)
def retrieve_instance(request: Request, study: Uid, series: Uid, instance: Uid,
                      principal: Principal = Depends(require("image.download_original")),
                      session: Session = Depends(db)) -> Response:
    """The stored DICOM (lossless; JPEG-LS once archived). Another hospital's exam only when
    ``RADQC_ALLOW_ORIGINAL_DOWNLOAD`` is on. Callers without ``patient.identity`` get a copy
    with the patient's identifiers replaced by the pseudonym. Single part ``application/dicom``
    unless the Accept header asks for ``multipart/related``."""
    ref = _study(session, principal, study)
    inst = _instance(session, _series(session, ref.exam, series), instance)
    _download_allowed(request, principal, ref)
    data = _original_bytes(request, principal, ref, inst)
    _log(request, principal, "image.download", ref.exam.id,
         detail={"series_uid": series, "sop_instance_uid": instance, "identity": principal.can("patient.identity")})
    if "multipart/related" in (request.headers.get("accept") or "").lower():
        return _multipart([("application/dicom", data)], "application/dicom")
    return Response(data, media_type="application/dicom",
                    headers={"Content-Disposition": f'attachment; filename="{instance}.dcm"'})


def _stream_originals(request: Request, principal: Principal, ref: StudyRef,
                      instances: Sequence[m.Instance]) -> StreamingResponse:
    """multipart/related; type="application/dicom" of every instance, read one at a time."""
    boundary = secrets.token_hex(16)

    def parts() -> Iterator[bytes]:
        for inst in instances:
            data = _original_bytes(request, principal, ref, inst)
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii") + data + b"\r\n"
        yield f"--{boundary}--\r\n".encode("ascii")

    return StreamingResponse(parts(), media_type=f'multipart/related; type="application/dicom"; boundary={boundary}')


@router.get("/dicomweb/studies/{study}/series/{series}",
            summary="WADO-RS: every original of a series (可见不可存 applies) / 下载序列原始 DICOM",
            responses=ORIGINAL_RESPONSES)
def retrieve_series(request: Request, study: Uid, series: Uid,
                    principal: Principal = Depends(require("image.download_original")),
                    session: Session = Depends(db)) -> Response:
    ref = _study(session, principal, study)
    row = _series(session, ref.exam, series)
    _download_allowed(request, principal, ref)
    instances = stack_order(newest_instances(session, [row.id]))
    _log(request, principal, "image.download", ref.exam.id,
         detail={"series_uid": series, "instances": len(instances), "identity": principal.can("patient.identity")})
    return _stream_originals(request, principal, ref, instances)


@router.get("/dicomweb/studies/{study}", summary="WADO-RS: every original of a study (可见不可存 applies) / 下载检查原始 DICOM",
            responses=ORIGINAL_RESPONSES)
def retrieve_study(request: Request, study: Uid, principal: Principal = Depends(require("image.download_original")),
                   session: Session = Depends(db)) -> Response:
    ref = _study(session, principal, study)
    _download_allowed(request, principal, ref)
    series_ids = list(session.scalars(select(m.Series.id).where(m.Series.exam_id == ref.exam.id)
                                      .order_by(m.Series.series_number, m.Series.id)).all())
    instances = newest_instances(session, series_ids)
    _log(request, principal, "image.download", ref.exam.id,
         detail={"series": len(series_ids), "instances": len(instances), "identity": principal.can("patient.identity")})
    return _stream_originals(request, principal, ref, instances)


# -- the web viewer's helpers ---------------------------------------------------------------------------


def _info_fields() -> list[str]:
    return list(render.presets_data().get("dicom_info_fields") or ())


@router.get("/api/series/{series_id}/stack", summary="The viewer's stack of a series / 序列影像栈")
def series_stack(request: Request, series_id: Annotated[int, Path(ge=1, le=MAX_ID)],
                 principal: Principal = Depends(require("image.read")),
                 session: Session = Depends(db)) -> dict[str, Any]:
    """Instances in slice order (the order of image-QC evidence ``instance_index``), each with the
    URL of its server-rendered image, plus geometry, the default window and the CT presets.
    With ``RADQC_PREFETCH=1`` the series is decoded in the background from here."""
    series, exam = _scoped_series(session, principal, series_id)
    ordered = stack_order(newest_instances(session, [series.id]))
    first = (ordered[0].header or {}) if ordered else {}
    window = _default_window(request, series, ordered)
    info: dict[str, Any] = {key: first.get(key) for key in _info_fields() if first.get(key) not in (None, "")}
    info.update({"Modality": series.modality, "SeriesNumber": series.series_number,
                 "SeriesDescription": series.description, "BodyPartExamined": series.body_part,
                 "StudyDate": exam.exam_time.strftime("%Y-%m-%d") if exam.exam_time else None,
                 "NumberOfImages": len(ordered)})
    if principal.can("patient.identity") and exam.patient_id is not None:
        enc = session.scalar(select(m.Patient.identifiers_enc).where(m.Patient.id == exam.patient_id))
        ids = _identifiers(request, enc)
        info.update({"PatientName": ids.get("patient_name"), "PatientID": ids.get("patient_id")})
    info = {k: v for k, v in info.items() if v not in (None, "")}
    _cache(request).prefetch(i.storage_key for i in ordered)
    _log(request, principal, "image.view", exam.id, detail={"what": "stack", "series_id": series.id})
    spacing = first.get("PixelSpacing")
    return {
        "series_id": series.id,
        "series_instance_uid": series.series_instance_uid,
        "exam_id": exam.id,
        "modality": series.modality,
        "description": series.description,
        "rows": first.get("Rows"),
        "columns": first.get("Columns"),
        "pixel_spacing": [float(v) for v in spacing] if isinstance(spacing, list) else None,
        "slice_thickness": first.get("SliceThickness"),
        "default_window": window,
        "presets": {name: {"center": p["center"], "width": p["width"], "zh": p.get("zh"), "en": p.get("en")}
                    for name, p in render.ct_presets().items()},
        "dicom_info": info,
        "watermarked": _watermark(request, principal, exam.hospital_id) is not None,
        "instances": [{"index": n, "instance_id": inst.id, "sop_instance_uid": inst.sop_instance_uid,
                       "instance_number": inst.instance_number, "z": _normal_position(inst.header or {}),
                       "frames": int((inst.header or {}).get("NumberOfFrames") or 1),
                       "rendered_url": f"/api/instances/{inst.id}/rendered"}
                      for n, inst in enumerate(ordered)],
    }


def _default_window(request: Request, series: m.Series, ordered: Sequence[m.Instance]) -> dict[str, float] | None:
    """The first image's header window, else the CT preset for the body part, else the middle
    image's percentiles (that one decode is needed anyway)."""
    if not ordered:
        return None
    header = ordered[0].header or {}
    raw_center, raw_width = header.get("WindowCenter"), header.get("WindowWidth")
    center: Any = raw_center[0] if isinstance(raw_center, list) and raw_center else raw_center
    width: Any = raw_width[0] if isinstance(raw_width, list) and raw_width else raw_width
    try:
        if center is not None and width is not None and float(width) > 0:
            return {"center": float(center), "width": float(width)}
    except (TypeError, ValueError):
        pass
    data = render.presets_data()
    if (series.modality or "").upper() == "CT":
        name = (data.get("ct_default_by_body_part") or {}).get((series.body_part or "").upper(), data.get("ct_default"))
        preset = render.ct_presets().get(str(name))
        if preset:
            return {"center": float(preset["center"]), "width": float(preset["width"])}
    try:
        middle = _cache(request).get(ordered[len(ordered) // 2].storage_key)
    except PixelError:
        return None
    return render.default_window(middle, 0).as_dict()


@router.get("/api/series/{series_id}/thumbnail", summary="A series thumbnail (PNG, 128 px) / 序列缩略图",
            responses={200: {"content": {"image/png": {}}}})
def series_thumbnail(request: Request, series_id: Annotated[int, Path(ge=1, le=MAX_ID)],
                     principal: Principal = Depends(require("image.read")),
                     session: Session = Depends(db)) -> Response:
    series, _exam = _scoped_series(session, principal, series_id)
    ordered = stack_order(newest_instances(session, [series.id]))
    if not ordered:
        raise _not_found()
    decoded = _decoded(request, ordered[len(ordered) // 2].storage_key)
    return Response(render.thumbnail(decoded, THUMBNAIL_PX), media_type="image/png")


@router.get("/api/instances/{instance_id}/rendered", summary="One image rendered for the viewer / 渲染单幅影像",
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
def instance_rendered(request: Request, instance_id: Annotated[int, Path(ge=1, le=MAX_ID)],
                      window: WindowQuery = None, viewport: ViewportQuery = None, format: FormatQuery = None,  # noqa: A002
                      frame: Annotated[int, Query(ge=1, le=100_000)] = 1,
                      principal: Principal = Depends(require("image.read")),
                      session: Session = Depends(db)) -> Response:
    """Window/level on the server (``window=C,W``; default: the header's, else the CT preset),
    PNG unless ``format=jpeg``; watermarked with the viewer's identity on other hospitals' exams."""
    storage_key, hospital_id = _scoped_instance(session, principal, instance_id)
    return _rendered(request, principal, hospital_id, storage_key, frame - 1, window, viewport, format)
