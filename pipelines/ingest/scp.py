"""``radqc receive``: a DICOM C-STORE receiver (storage SCP) that a hospital PACS or modality
sends to, built on pynetdicom.

The one rule that matters: an instance is acknowledged with status 0x0000 only after
:func:`~radqc.pipelines.ingest.service.ingest_one` has returned, i.e. after its bytes are
fsynced in the object store and its catalogue rows are committed. A sender that gets
success may delete its copy; a crash after the acknowledgement loses nothing.

What is stored is the data set exactly as it came over the wire (no decode/re-encode),
wrapped in a Part-10 file whose meta information is deterministic: Media Storage SOP
Class/Instance UID and Transfer Syntax from the request, and RadQC's fixed implementation
UID. The sender's AE title and address go to ``source_ref``, not into the file, so the same
instance re-sent from another node (or after an upgrade) hashes the same and is recorded
as a duplicate instead of a new version.

An instance that cannot be ingested is quarantined with its reason (by ``ingest_one``)
and the sender gets a failure status from :data:`FAILURE_STATUS`, never a silent success.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from radqc.pipelines.ingest.service import (
    QUARANTINED,
    CatalogueWriter,
    IngestSummary,
    Prepared,
    ingest_one,
    quarantine_bytes,
)
from radqc.workspace import Workspace

log = logging.getLogger(__name__)

#: C-STORE status for success (DICOM PS3.4 B.2.3).
SUCCESS = 0x0000
#: Refused: out of resources — the instance could not be stored (disk, database).
OUT_OF_RESOURCES = 0xA700
#: Error: data set does not match SOP class.
DOES_NOT_MATCH_SOP_CLASS = 0xA900
#: Error: cannot understand — the data set cannot be parsed.
CANNOT_UNDERSTAND = 0xC210

#: Quarantine reason (see ``radqc.dicom.parse.REASONS``) -> failure status sent back.
#: Anything not listed is "cannot understand".
FAILURE_STATUS: dict[str, int] = {
    "missing_tag": DOES_NOT_MATCH_SOP_CLASS,
    "no_pixel_data": DOES_NOT_MATCH_SOP_CLASS,
    "pixel_data_short": DOES_NOT_MATCH_SOP_CLASS,
    "oversized": OUT_OF_RESOURCES,
    "empty_file": CANNOT_UNDERSTAND,
    "not_dicom": CANNOT_UNDERSTAND,
    "truncated": CANNOT_UNDERSTAND,
    "corrupt": CANNOT_UNDERSTAND,
    "invalid_element": CANNOT_UNDERSTAND,
}

#: Fixed implementation identity written into received files' meta information. Derived
#: deterministically (pydicom's UID root) and deliberately never versioned: it is part of
#: the stored bytes, and so of their content hash.
RADQC_IMPLEMENTATION_UID = generate_uid(entropy_srcs=["RadQC Workbench storage SCP"])
RADQC_IMPLEMENTATION_VERSION = "RADQC"

#: Transfer syntaxes accepted for every storage SOP class. Bytes are stored as received,
#: so anything pydicom/pynetdicom can name is safe to accept; the common ones are first
#: because an SCU picks from its proposals in order of our preference for some peers.
ACCEPTED_TRANSFER_SYNTAXES: list[str] = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline 8 bit
    "1.2.840.10008.1.2.4.51",  # JPEG Extended 12 bit
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.92",  # JPEG 2000 Multi-component Lossless
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 Multi-component
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2 MP@ML
    "1.2.840.10008.1.2.4.101",  # MPEG2 MP@HL
    "1.2.840.10008.1.2.4.102",  # H.264 High Profile 4.1
    "1.2.840.10008.1.2.4.103",  # H.264 BD-compatible
]

#: Largest PDU we accept. Large PDUs mean fewer Python-level reads per instance (a 0.5 MB
#: CT slice is 32 PDUs at pynetdicom's 16 KB default, 2 at 256 KB).
MAX_PDU = 256 * 1024

StoredHook = Callable[[str, Prepared], None]


def encode_part10(event: Any) -> bytes:
    """The received data set as a Part-10 file, its bytes exactly as sent over the wire."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    meta = event.file_meta
    meta.ImplementationClassUID = UID(RADQC_IMPLEMENTATION_UID)
    meta.ImplementationVersionName = RADQC_IMPLEMENTATION_VERSION
    buf = DicomBytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    buf.write(event.encoded_dataset(include_meta=False))
    return buf.getvalue()


def _failure(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]  # LO: at most 64 characters
    return ds


@dataclass
class ReceiverStats:
    """Thread-safe running totals of one receiver (all associations together)."""

    summary: IngestSummary
    failed: int = 0
    associations: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = self.summary.to_dict()
        out.update(failed=self.failed, associations=self.associations)
        return out


class StorageSCP:
    """A storage SCP (C-STORE + C-ECHO) writing into one workspace.

    ``start(blocking=False)`` returns once the port is listening; ``stop()`` closes it
    after in-flight associations. ``port=0`` picks a free port (see :attr:`port`).
    ``allowed_aes`` limits which calling AE titles may associate (``None``: any).
    ``on_stored(outcome, prepared)`` is called after each instance is durable; the PACS pull
    uses it to count what a C-MOVE delivered.
    """

    def __init__(
        self,
        workspace: Workspace,
        *,
        ae_title: str = "RADQC",
        port: int = 11112,
        bind: str = "127.0.0.1",
        allowed_aes: Sequence[str] | None = None,
        source: str = "scp",
        on_stored: StoredHook | None = None,
    ) -> None:
        self.ws = workspace
        self._writer = CatalogueWriter(workspace)  # one per receiver: caches committed series ids
        self.ae_title = ae_title
        self.bind = bind
        self.requested_port = port
        self.allowed_aes = [a.strip() for a in allowed_aes or [] if a.strip()]
        self.source = source
        self.on_stored = on_stored
        self.stats = ReceiverStats(IngestSummary())
        self._lock = threading.Lock()
        self._server: Any = None
        self._ae: Any = None

    # -- lifecycle ----------------------------------------------------------------------
    def _build_ae(self) -> Any:
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = MAX_PDU
        ae.maximum_associations = 32
        ae.network_timeout = 60
        ae.dimse_timeout = 120
        ae.acse_timeout = 30
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax:
                ae.add_supported_context(context.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ACCEPTED_TRANSFER_SYNTAXES[:4])
        if self.allowed_aes:
            ae.require_calling_aet = self.allowed_aes
        self._handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_ACCEPTED, self._on_accepted),
        ]
        return ae

    def start(self, blocking: bool = False) -> StorageSCP:
        """Listen; with ``blocking=True`` serve until interrupted (Ctrl-C) then stop."""
        self._ae = self._build_ae()
        self._server = self._ae.start_server(
            (self.bind, self.requested_port), block=False, evt_handlers=self._handlers
        )
        log.info("storage SCP %s listening on %s:%d", self.ae_title, self.bind, self.port)
        if blocking:
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
            finally:
                self.stop()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None

    def __enter__(self) -> StorageSCP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handlers -----------------------------------------------------------------------
    def _on_accepted(self, event: Any) -> None:
        with self._lock:
            self.stats.associations += 1

    def _on_echo(self, event: Any) -> int:
        return SUCCESS

    def _on_store(self, event: Any) -> int | Dataset:
        requestor = event.assoc.requestor
        source_ref = f"{requestor.ae_title}@{requestor.address}"
        try:
            data = encode_part10(event)
        except Exception as exc:  # noqa: BLE001 - a broken request is refused, and logged
            log.warning("C-STORE from %s: cannot encode the received data set: %s", source_ref, exc)
            return _failure(CANNOT_UNDERSTAND, f"cannot encode data set: {type(exc).__name__}")
        try:
            if len(data) > self.ws.settings.max_file_bytes:
                prepared = quarantine_bytes(
                    self.ws.store,
                    None,
                    self.source,
                    source_ref,
                    "oversized",
                    f"{len(data)} > {self.ws.settings.max_file_bytes} bytes",
                    size=len(data),
                )
                outcome, _ = self._writer.commit([prepared])[0]
            else:
                outcome, prepared = ingest_one(self.ws, data, self.source, source_ref, self._writer)
        except Exception as exc:  # noqa: BLE001 - storage failed: the sender must keep its copy
            log.exception("C-STORE from %s: storing failed", source_ref)
            with self._lock:
                self.stats.failed += 1
            return _failure(OUT_OF_RESOURCES, f"storage failed: {type(exc).__name__}")
        with self._lock:
            self.stats.summary.add(prepared, outcome)
        if self.on_stored is not None:
            self.on_stored(outcome, prepared)
        if outcome == QUARANTINED:
            code = prepared.reason_code or "corrupt"
            log.warning("C-STORE from %s quarantined: %s %s", source_ref, code, prepared.reason_detail)
            return _failure(FAILURE_STATUS.get(code, CANNOT_UNDERSTAND), f"quarantined: {code}")
        return SUCCESS
