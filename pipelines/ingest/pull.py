"""``radqc pull``: fetch studies from a PACS by DICOMweb (QIDO-RS + WADO-RS) or by DIMSE
(C-FIND + C-MOVE to a receiver started for the pull), resumably.

A pull is a :class:`~radqc.catalogue.models.PullJob` keyed by (protocol, peer, query): the
job records, per study, whether it is complete. Re-running the same pull skips completed
studies without contacting the PACS for them, and for the others fetches only what the
catalogue lacks (whole study, whole series, or single instances), so an interrupted pull
continues where it stopped and nothing is fetched twice.

Every instance goes through the same ingest path as a folder import
(:func:`prepare_bytes` + :class:`CatalogueWriter`, or :func:`ingest_one` in the C-MOVE
receiver), so quarantine, duplicate and version rules are identical for every source.
A study is marked complete only after everything fetched for it is committed and the
number of instances received covers what the PACS said it holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select

from radqc.catalogue import models as m
from radqc.pipelines.ingest.service import (
    DUPLICATE,
    INGESTED,
    CatalogueWriter,
    IngestSummary,
    Prepared,
    prepare_bytes,
)
from radqc.workspace import Workspace

log = logging.getLogger(__name__)

#: Instances prepared before one catalogue transaction during a DICOMweb pull.
COMMIT_BATCH = 16
#: SOP Instance UIDs per instance-level C-MOVE / chunk of a catalogue IN (...) query.
UID_CHUNK = 200

STATE_DONE = "done"
STATE_PENDING = "pending"
STATE_FAILED = "failed"


class PullError(RuntimeError):
    """The PACS refused or failed a query or retrieve; the message says which and why."""


# -- query and what the PACS answers ------------------------------------------------------------
@dataclass(frozen=True)
class PullQuery:
    """What to pull. Dates filter on StudyDate, inclusive on both ends."""

    accession: str | None = None
    patient_id: str | None = None
    since: date | None = None
    until: date | None = None
    study_uids: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.accession or self.patient_id or self.since or self.until or self.study_uids)

    def date_range(self) -> str | None:
        """DICOM range matching for StudyDate (``A-B``, ``A-``, ``-B``), or None."""
        if not self.since and not self.until:
            return None
        lo = self.since.strftime("%Y%m%d") if self.since else ""
        hi = self.until.strftime("%Y%m%d") if self.until else ""
        return lo if lo and lo == hi else f"{lo}-{hi}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.accession:
            out["accession"] = self.accession
        if self.patient_id:
            out["patient_id"] = self.patient_id
        if self.since:
            out["since"] = self.since.isoformat()
        if self.until:
            out["until"] = self.until.isoformat()
        if self.study_uids:
            out["study_uids"] = sorted(self.study_uids)
        return out


@dataclass
class StudyInfo:
    study_uid: str
    accession: str | None = None
    study_date: str | None = None
    patient_id: str | None = None
    series_count: int | None = None
    instance_count: int | None = None

    def label(self) -> str:
        return self.accession or self.study_uid[-24:]


@dataclass(frozen=True)
class FetchUnit:
    """One retrieve request: a whole study, a whole series, or listed instances of a series."""

    level: str  # STUDY, SERIES, IMAGE
    study_uid: str
    series_uid: str | None = None
    sop_uids: tuple[str, ...] = ()
    expected: int | None = None


@dataclass
class StudyGap:
    """What the catalogue lacks of one PACS study (the plan for a pull, the rows of a reconcile)."""

    study: StudyInfo
    in_catalogue: bool
    #: series UID -> instance count on the PACS (only queried when the study is in the catalogue)
    pacs_series: dict[str, int | None] = field(default_factory=dict)
    #: series absent from the catalogue: series UID -> PACS instance count
    missing_series: dict[str, int | None] = field(default_factory=dict)
    #: series present but short: series UID -> SOP Instance UIDs the catalogue lacks
    missing_instances: dict[str, list[str]] = field(default_factory=dict)
    #: series UID -> (PACS count, catalogue count) for the short series
    short_counts: dict[str, tuple[int | None, int]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.in_catalogue and not self.missing_series and not any(self.missing_instances.values())

    @property
    def missing_count(self) -> int:
        if not self.in_catalogue:
            return self.study.instance_count or 0
        return sum(c or 0 for c in self.missing_series.values()) + sum(
            len(v) for v in self.missing_instances.values()
        )

    def units(self) -> list[FetchUnit]:
        uid = self.study.study_uid
        if not self.in_catalogue:
            return [FetchUnit("STUDY", uid, expected=self.study.instance_count)]
        units = [FetchUnit("SERIES", uid, s, expected=n) for s, n in sorted(self.missing_series.items())]
        for series_uid, sops in sorted(self.missing_instances.items()):
            for i in range(0, len(sops), UID_CHUNK):
                chunk = tuple(sops[i : i + UID_CHUNK])
                units.append(FetchUnit("IMAGE", uid, series_uid, chunk, expected=len(chunk)))
        return units


# -- what a study pull delivers -------------------------------------------------------------------
@dataclass
class StudyTally:
    ingested: int = 0
    duplicate: int = 0
    quarantined: int = 0

    @property
    def received(self) -> int:
        return self.ingested + self.duplicate + self.quarantined

    def add(self, outcome: str) -> None:
        if outcome == INGESTED:
            self.ingested += 1
        elif outcome == DUPLICATE:
            self.duplicate += 1
        else:
            self.quarantined += 1


class PullProgress:
    """Callbacks a caller overrides to draw progress (the CLI) or to stop a pull (tests).

    ``instance`` may be called from the C-MOVE receiver's thread.
    """

    def study_started(self, study: StudyInfo, expected: int) -> None:  # noqa: B027 - optional hook
        pass

    def instance(self, study: StudyInfo, received: int) -> None:  # noqa: B027
        pass

    def study_finished(self, study: StudyInfo, state: str, tally: StudyTally) -> None:  # noqa: B027
        pass


class Sink:
    """Where fetched instances go: bytes from DICOMweb are ingested here in small batches;
    instances the C-MOVE receiver already ingested are only counted."""

    def __init__(
        self, workspace: Workspace, source_ref: str, progress: PullProgress, summary: IngestSummary
    ) -> None:
        self.ws = workspace
        self.source_ref = source_ref
        self.progress = progress
        self.summary = summary
        self.writer = CatalogueWriter(workspace)
        self.study: StudyInfo | None = None
        self.tally = StudyTally()
        self._batch: list[Prepared] = []
        self._lock = threading.Lock()

    def begin(self, study: StudyInfo) -> None:
        self.study, self.tally, self._batch = study, StudyTally(), []

    def add_bytes(self, data: bytes) -> None:
        self._batch.append(prepare_bytes(self.ws.store, data, "pull", self.source_ref))
        if len(self._batch) >= COMMIT_BATCH:
            self.flush()

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        for item, (outcome, new_version) in zip(batch, self.writer.commit(batch), strict=True):
            self.stored(outcome, item, new_version)

    def stored(self, outcome: str, prepared: Prepared, new_version: bool = False) -> None:
        with self._lock:
            self.summary.add(prepared, outcome, new_version)
            self.tally.add(outcome)
            received = self.tally.received
        if self.study is not None:
            self.progress.instance(self.study, received)


# -- PACS peers ----------------------------------------------------------------------------------
class PacsPeer(ABC):
    protocol: str

    @property
    @abstractmethod
    def peer(self) -> str:
        """Canonical name of the PACS endpoint (part of the pull job's key)."""

    @abstractmethod
    def find_studies(self, query: PullQuery) -> list[StudyInfo]: ...

    @abstractmethod
    def find_series(self, study_uid: str) -> dict[str, int | None]: ...

    @abstractmethod
    def find_instances(self, study_uid: str, series_uid: str) -> list[str]: ...

    @abstractmethod
    def fetch(self, unit: FetchUnit, sink: Sink) -> None:
        """Retrieve one unit into ``sink``; raise :class:`PullError` when the PACS fails it."""

    def close(self) -> None:  # noqa: B027 - optional
        pass

    def __enter__(self) -> PacsPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_value(item: dict[str, Any], tag: str) -> Any:
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


# DICOM JSON tags used in QIDO-RS answers.
TAG_STUDY_UID = "0020000D"
TAG_SERIES_UID = "0020000E"
TAG_SOP_UID = "00080018"
TAG_ACCESSION = "00080050"
TAG_STUDY_DATE = "00080020"
TAG_PATIENT_ID = "00100020"
TAG_STUDY_SERIES = "00201206"
TAG_STUDY_INSTANCES = "00201208"
TAG_SERIES_INSTANCES = "00201209"

#: Accept header for WADO-RS: the instances as stored, never transcoded (byte identity).
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class DicomWebPeer(PacsPeer):
    """QIDO-RS searches and WADO-RS retrieval through dicomweb-client.

    Retrieval asks for ``transfer-syntax=*`` and keeps each multipart body part as raw
    bytes: dicomweb-client's public ``retrieve_*`` calls decode into pydicom data sets, and
    re-encoding those would change the bytes (and so the content hash) of what the PACS holds.
    """

    protocol = "dicomweb"

    def __init__(self, url: str, timeout: float = 120.0, headers: dict[str, str] | None = None) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.url = url.rstrip("/")
        self.client = DICOMwebClient(url=self.url, headers=headers, timeout=timeout)

    @property
    def peer(self) -> str:
        return self.url

    def _search(self, fn: Any, **kwargs: Any) -> list[dict[str, Any]]:
        try:
            return list(fn(get_remaining=True, **kwargs))
        except Exception as exc:  # requests/HTTP errors: one clear message
            raise PullError(f"QIDO-RS search failed at {self.url}: {type(exc).__name__}: {exc}") from exc

    def find_studies(self, query: PullQuery) -> list[StudyInfo]:
        filters: dict[str, Any] = {}
        if query.accession:
            filters["AccessionNumber"] = query.accession
        if query.patient_id:
            filters["PatientID"] = query.patient_id
        if query.date_range():
            filters["StudyDate"] = query.date_range()
        fields = ["NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries"]
        if query.study_uids:
            found = []
            for uid in query.study_uids:
                found += self._search(
                    self.client.search_for_studies,
                    search_filters={**filters, "StudyInstanceUID": uid},
                    fields=fields,
                )
        else:
            found = self._search(self.client.search_for_studies, search_filters=filters, fields=fields)
        studies = {}
        for item in found:
            uid = _json_value(item, TAG_STUDY_UID)
            if not uid:
                continue
            studies[uid] = StudyInfo(
                study_uid=uid,
                accession=_json_value(item, TAG_ACCESSION),
                study_date=_json_value(item, TAG_STUDY_DATE),
                patient_id=_json_value(item, TAG_PATIENT_ID),
                series_count=_as_int(_json_value(item, TAG_STUDY_SERIES)),
                instance_count=_as_int(_json_value(item, TAG_STUDY_INSTANCES)),
            )
        return sorted(studies.values(), key=lambda s: (s.study_date or "", s.study_uid))

    def find_series(self, study_uid: str) -> dict[str, int | None]:
        found = self._search(
            self.client.search_for_series,
            study_instance_uid=study_uid,
            fields=["NumberOfSeriesRelatedInstances"],
        )
        out: dict[str, int | None] = {}
        for item in found:
            uid = _json_value(item, TAG_SERIES_UID)
            if uid:
                out[uid] = _as_int(_json_value(item, TAG_SERIES_INSTANCES))
        return out

    def find_instances(self, study_uid: str, series_uid: str) -> list[str]:
        found = self._search(
            self.client.search_for_instances, study_instance_uid=study_uid, series_instance_uid=series_uid
        )
        return sorted({uid for item in found if (uid := _json_value(item, TAG_SOP_UID))})

    def _retrieve_raw(self, url: str) -> Iterator[bytes]:
        try:
            response = self.client._http_get(url, headers={"Accept": WADO_ACCEPT}, stream=True)
        except Exception as exc:
            raise PullError(f"WADO-RS retrieve failed: {url}: {type(exc).__name__}: {exc}") from exc
        if response.headers.get("Content-Type", "").startswith("application/dicom"):
            yield response.content  # a server that answers one bare part (allowed by some readings)
            return
        try:
            for part in self.client._decode_multipart_message(response, stream=True):
                yield bytes(part)
        except PullError:
            raise
        except Exception as exc:
            raise PullError(f"WADO-RS response broken: {url}: {type(exc).__name__}: {exc}") from exc

    def fetch(self, unit: FetchUnit, sink: Sink) -> None:
        base = f"{self.url}/studies/{unit.study_uid}"
        if unit.level == "STUDY":
            urls = [base]
        elif unit.level == "SERIES":
            urls = [f"{base}/series/{unit.series_uid}"]
        else:
            urls = [f"{base}/series/{unit.series_uid}/instances/{sop}" for sop in unit.sop_uids]
        try:
            for url in urls:
                for data in self._retrieve_raw(url):
                    sink.add_bytes(data)
        finally:
            sink.flush()  # whatever arrived is valid and durable, even if the rest failed


class DimsePeer(PacsPeer):
    """C-FIND (study root) for queries and C-MOVE to our own storage SCP for retrieval.

    The receiver listens on ``move_port`` with AE ``ae_title`` only while the peer is open;
    the PACS must know that AE title as a destination (host and port) — see
    docs/networking.md. Retrieved instances are ingested by the receiver one by one and
    acknowledged only once durable, exactly like ``radqc receive``.
    """

    protocol = "dimse"

    def __init__(
        self,
        workspace: Workspace,
        host: str,
        port: int,
        called_ae: str,
        *,
        ae_title: str = "RADQC",
        move_port: int = 11113,
        bind: str = "127.0.0.1",
        timeout: float = 120.0,
    ) -> None:
        self.ws = workspace
        self.host, self.port, self.called_ae = host, int(port), called_ae
        self.ae_title, self.move_port, self.bind = ae_title, move_port, bind
        self.timeout = timeout
        self._assoc: Any = None
        self._scp: Any = None
        self._sink: Sink | None = None

    @property
    def peer(self) -> str:
        return f"{self.called_ae}@{self.host}:{self.port}"

    # -- association ---------------------------------------------------------------------
    def _association(self) -> Any:
        if self._assoc is not None and self._assoc.is_established:
            return self._assoc
        from pynetdicom import AE
        from pynetdicom.sop_class import (  # type: ignore[attr-defined]
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelMove,
        )

        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = 30
        ae.dimse_timeout = self.timeout
        ae.network_timeout = self.timeout
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate(self.host, self.port, ae_title=self.called_ae)
        if not assoc.is_established:
            raise PullError(
                f"association with {self.peer} was rejected or failed / 无法与 PACS 建立关联 "
                f"(check host, port and called AE title)"
            )
        self._assoc = assoc
        return assoc

    def close(self) -> None:
        if self._assoc is not None:
            try:
                if self._assoc.is_established:
                    self._assoc.release()
            finally:
                self._assoc = None
        if self._scp is not None:
            self._scp.stop()
            self._scp = None

    # -- C-FIND --------------------------------------------------------------------------
    def _find(self, identifier: Any) -> list[Any]:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

        assoc = self._association()
        answers = []
        for status, ident in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
            if status is None or "Status" not in status:
                self.close()
                raise PullError(f"C-FIND to {self.peer} timed out or the association was aborted")
            code = int(status.Status)
            if code in (0xFF00, 0xFF01):
                if ident is not None:
                    answers.append(ident)
            elif code != 0x0000:
                comment = status.get("ErrorComment", "")
                raise PullError(f"C-FIND to {self.peer} failed with status 0x{code:04X} {comment}")
        return answers

    def find_studies(self, query: PullQuery) -> list[StudyInfo]:
        from pydicom.dataset import Dataset

        uids: Sequence[str | None] = query.study_uids or [None]
        studies: dict[str, StudyInfo] = {}
        for uid in uids:
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.StudyInstanceUID = uid or ""
            ds.AccessionNumber = query.accession or ""
            ds.PatientID = query.patient_id or ""
            ds.StudyDate = query.date_range() or ""
            ds.NumberOfStudyRelatedInstances = ""
            ds.NumberOfStudyRelatedSeries = ""
            for ident in self._find(ds):
                suid = str(ident.get("StudyInstanceUID", "") or "").strip()
                if not suid:
                    continue
                studies[suid] = StudyInfo(
                    study_uid=suid,
                    accession=str(ident.get("AccessionNumber", "") or "") or None,
                    study_date=str(ident.get("StudyDate", "") or "") or None,
                    patient_id=str(ident.get("PatientID", "") or "") or None,
                    series_count=_as_int(ident.get("NumberOfStudyRelatedSeries")),
                    instance_count=_as_int(ident.get("NumberOfStudyRelatedInstances")),
                )
        return sorted(studies.values(), key=lambda s: (s.study_date or "", s.study_uid))

    def find_series(self, study_uid: str) -> dict[str, int | None]:
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = ""
        ds.NumberOfSeriesRelatedInstances = ""
        out: dict[str, int | None] = {}
        for ident in self._find(ds):
            uid = str(ident.get("SeriesInstanceUID", "") or "").strip()
            if uid:
                out[uid] = _as_int(ident.get("NumberOfSeriesRelatedInstances"))
        return out

    def find_instances(self, study_uid: str, series_uid: str) -> list[str]:
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.QueryRetrieveLevel = "IMAGE"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ""
        return sorted({str(i.SOPInstanceUID).strip() for i in self._find(ds) if i.get("SOPInstanceUID")})

    # -- C-MOVE --------------------------------------------------------------------------
    def _receiver(self, sink: Sink) -> None:
        self._sink = sink
        if self._scp is None:
            from radqc.pipelines.ingest.scp import StorageSCP

            try:
                self._scp = StorageSCP(
                    self.ws,
                    ae_title=self.ae_title,
                    port=self.move_port,
                    bind=self.bind,
                    source="pull",
                    on_stored=lambda outcome, prepared: (
                        self._sink.stored(outcome, prepared) if self._sink else None
                    ),
                ).start()
            except OSError as exc:
                raise PullError(
                    f"cannot listen for C-MOVE on {self.bind}:{self.move_port}: {exc} "
                    f"/ 无法监听 C-MOVE 接收端口（换一个 --move-port）"
                ) from exc

    def fetch(self, unit: FetchUnit, sink: Sink) -> None:
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove  # type: ignore[attr-defined]

        self._receiver(sink)
        ds = Dataset()
        ds.QueryRetrieveLevel = unit.level
        ds.StudyInstanceUID = unit.study_uid
        if unit.level in ("SERIES", "IMAGE"):
            ds.SeriesInstanceUID = unit.series_uid
        if unit.level == "IMAGE":
            ds.SOPInstanceUID = list(unit.sop_uids) if len(unit.sop_uids) > 1 else unit.sop_uids[0]
        assoc = self._association()
        final: Any = None
        for status, _ident in assoc.send_c_move(
            ds, self.ae_title, StudyRootQueryRetrieveInformationModelMove
        ):
            if status is None or "Status" not in status:
                self.close()
                raise PullError(f"C-MOVE from {self.peer} timed out or the association was aborted")
            final = status
        code = int(final.Status) if final is not None else -1
        failed = _as_int(final.get("NumberOfFailedSuboperations")) or 0 if final is not None else 0
        if code == 0xA801:
            raise PullError(
                f"C-MOVE refused by {self.peer}: move destination {self.ae_title!r} unknown to the PACS "
                f"/ PACS 未配置目标 AE {self.ae_title}（需配置主机与端口 {self.move_port}）"
            )
        if code not in (0x0000, 0xB000):
            comment = final.get("ErrorComment", "") if final is not None else ""
            raise PullError(
                f"C-MOVE from {self.peer} to {self.ae_title!r} failed with status 0x{code:04X} {comment}".strip()
            )
        if failed:
            # Sub-operations we answered with a failure are our quarantines; anything else is reported.
            log.warning("C-MOVE %s %s: %d sub-operations failed", unit.level, unit.study_uid, failed)


def parse_peer(spec: str) -> tuple[str, str, int | None]:
    """``http(s)://...`` -> DICOMweb; ``HOST:PORT`` -> DIMSE. Returns (protocol, host_or_url, port)."""
    if spec.startswith(("http://", "https://")):
        return "dicomweb", spec, None
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"PACS address must be a DICOMweb URL or HOST:PORT, got {spec!r} / PACS 地址格式错误"
        )
    return "dimse", host, int(port)


# -- the catalogue side --------------------------------------------------------------------------
def catalogue_index(workspace: Workspace, study_uids: Iterable[str]) -> dict[str, dict[str, set[str]]]:
    """study UID -> series UID -> SOP Instance UIDs held, for the studies the catalogue knows."""
    uids = sorted(set(study_uids))
    out: dict[str, dict[str, set[str]]] = {}
    with workspace.sessions() as s:
        for i in range(0, len(uids), UID_CHUNK):
            chunk = uids[i : i + UID_CHUNK]
            for (uid,) in s.execute(
                select(m.Exam.study_instance_uid).where(m.Exam.study_instance_uid.in_(chunk))
            ):
                if uid:
                    out.setdefault(uid, {})
            rows = s.execute(
                select(m.Exam.study_instance_uid, m.Series.series_instance_uid, m.Instance.sop_instance_uid)
                .join(m.Series, m.Series.exam_id == m.Exam.id)
                .outerjoin(m.Instance, m.Instance.series_id == m.Series.id)
                .where(m.Exam.study_instance_uid.in_(chunk))
            )
            for study_uid, series_uid, sop_uid in rows:
                if not study_uid:
                    continue
                sops = out.setdefault(study_uid, {}).setdefault(series_uid, set())
                if sop_uid:
                    sops.add(sop_uid)
    return out


def study_gap(peer: PacsPeer, study: StudyInfo, held: dict[str, set[str]] | None) -> StudyGap:
    """Compare one PACS study with what the catalogue holds (``None``: study unknown).

    Series counts decide which series need an instance-level query, so a complete study
    costs one series-level query and no instance listing.
    """
    if held is None:
        return StudyGap(study, in_catalogue=False)
    gap = StudyGap(study, in_catalogue=True, pacs_series=peer.find_series(study.study_uid))
    for series_uid, count in gap.pacs_series.items():
        have = held.get(series_uid)
        if have is None:
            gap.missing_series[series_uid] = count
            continue
        if count is not None and len(have) >= count:
            continue
        missing = [sop for sop in peer.find_instances(study.study_uid, series_uid) if sop not in have]
        if missing:
            gap.missing_instances[series_uid] = missing
            gap.short_counts[series_uid] = (count, len(have))
    return gap


# -- the pull ------------------------------------------------------------------------------------
@dataclass
class PullResult:
    job_key: str
    protocol: str
    peer: str
    query: dict[str, Any]
    studies_found: int = 0
    studies_done: int = 0
    studies_skipped: int = 0
    studies_failed: int = 0
    summary: IngestSummary = field(default_factory=IngestSummary)
    studies: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_key": self.job_key,
            "protocol": self.protocol,
            "peer": self.peer,
            "query": self.query,
            "studies_found": self.studies_found,
            "studies_done": self.studies_done,
            "studies_skipped": self.studies_skipped,
            "studies_failed": self.studies_failed,
            "instances_ingested": self.summary.ingested,
            "instances_duplicate": self.summary.duplicate,
            "instances_quarantined": self.summary.quarantined,
            "instances_new_versions": self.summary.new_versions,
            "bytes_received": self.summary.bytes_seen,
            "quarantine_reasons": dict(self.summary.reasons),
            "interrupted": self.interrupted,
            "errors": self.errors,
            "studies": self.studies,
        }


def job_key(protocol: str, peer: str, query: PullQuery) -> str:
    canonical = json.dumps({"protocol": protocol, "peer": peer, "query": query.to_json()}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _load_job(ws: Workspace, key: str, protocol: str, peer: str, query: PullQuery) -> dict[str, Any]:
    with ws.transaction() as s:
        job = s.scalar(select(m.PullJob).where(m.PullJob.job_key == key))
        if job is None:
            s.add(m.PullJob(job_key=key, protocol=protocol, peer=peer, query=query.to_json(), progress={}))
            return {}
        return dict(job.progress or {})


def _save_study(ws: Workspace, key: str, study_uid: str, entry: dict[str, Any]) -> None:
    """Record one study's state in the job (a new dict, so the JSON column is rewritten)."""
    with ws.transaction() as s:
        job = s.scalar(select(m.PullJob).where(m.PullJob.job_key == key).with_for_update())
        assert job is not None
        job.progress = {**(job.progress or {}), study_uid: entry}


def pull(
    workspace: Workspace,
    peer: PacsPeer,
    query: PullQuery,
    *,
    progress: PullProgress | None = None,
    max_studies: int | None = None,
) -> PullResult:
    """Pull every study matching ``query`` that is not complete yet; see the module docstring.

    ``max_studies`` stops after that many studies were fetched in this run (the remaining
    studies stay pending in the job, exactly as after an interruption).
    """
    progress = progress or PullProgress()
    key = job_key(peer.protocol, peer.peer, query)
    result = PullResult(key, peer.protocol, peer.peer, query.to_json())
    done_before = _load_job(workspace, key, peer.protocol, peer.peer, query)
    studies = peer.find_studies(query)
    result.studies_found = len(studies)
    held = catalogue_index(workspace, [s.study_uid for s in studies])
    sink = Sink(workspace, f"{peer.protocol}:{peer.peer}", progress, result.summary)
    fetched = 0
    try:
        for study in studies:
            row: dict[str, Any] = {"study_uid": study.study_uid, "accession": study.accession}
            if done_before.get(study.study_uid, {}).get("state") == STATE_DONE:
                result.studies_skipped += 1
                result.studies.append({**row, "state": "skipped", "reason": "completed by an earlier run"})
                continue
            if max_studies is not None and fetched >= max_studies:
                result.interrupted = True
                break
            state, tally, note = _pull_study(
                workspace, peer, study, held.get(study.study_uid), sink, progress, result
            )
            if state == "already_complete":
                result.studies_skipped += 1
            elif state == STATE_DONE:
                result.studies_done += 1
                fetched += 1
            else:
                result.studies_failed += 1
                fetched += 1
            entry = {
                "state": STATE_DONE if state in (STATE_DONE, "already_complete") else STATE_FAILED,
                "instances": tally.received,
                "accession": study.accession,
            }
            _save_study(workspace, key, study.study_uid, entry)
            result.studies.append(
                {**row, "state": state, "instances": tally.received, **({"note": note} if note else {})}
            )
            progress.study_finished(study, state, tally)
    except BaseException:
        result.interrupted = True
        raise
    finally:
        peer.close()
    return result


def _pull_study(
    ws: Workspace,
    peer: PacsPeer,
    study: StudyInfo,
    held: dict[str, set[str]] | None,
    sink: Sink,
    progress: PullProgress,
    result: PullResult,
) -> tuple[str, StudyTally, str]:
    try:
        gap = study_gap(peer, study, held)
    except PullError as exc:
        result.errors.append(str(exc))
        return STATE_FAILED, StudyTally(), str(exc)
    if gap.complete:
        return "already_complete", StudyTally(), ""
    units = gap.units()
    expected = sum(u.expected or 0 for u in units)
    sink.begin(study)
    progress.study_started(study, expected)
    try:
        for unit in units:
            peer.fetch(unit, sink)
    except PullError as exc:
        result.errors.append(str(exc))
        return STATE_FAILED, sink.tally, str(exc)
    # Complete only when what arrived covers what the PACS announced for the missing part.
    if expected and sink.tally.received < expected:
        note = f"received {sink.tally.received} of {expected} instances"
        result.errors.append(f"study {study.study_uid}: {note}")
        return STATE_FAILED, sink.tally, note
    return STATE_DONE, sink.tally, ""
