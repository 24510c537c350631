"""The ``items`` stage: the exam's ordered item names -> standard items (issue #6, docs/items.md).

Reads the order (``Exam.ordered_items``: the HIS/RIS exam items, or the StudyDescription when
no record came), normalises every string with the hospital's confirmed mappings first
(:mod:`radqc.pipelines.items`), and returns::

    {"schema": 1, "hospital": ..., "no_order": bool,
     "ordered": [{"text", "local_code", "items": [...], "status", "needs_review"}],
     "standard_items": [{"code", "name", "modality", "parts", "method", "laterality",
                         "confidence", "source", "from_text_index"}],
     "unmapped": [{"text", "from_text_index", "status", "evidence"}]}

The ``series`` stage reads ``standard_items``: only items at or above the review threshold
(a low-confidence proposal stays in ``ordered[i].items`` and ``unmapped``, never a silent guess). An exam without an order gets ``no_order: true``
and empty lists, never an error. The projection puts every name that needs review on the
hospital's review queue (counted once per exam, however often the stage re-runs).

Confirmed mappings live in the catalogue, which a stage function does not open; like
``rule_qc`` it reads them through the workspace this process belongs to (read-only), and
``versions`` carries a digest of the mapping table, so a new confirmation re-runs the stage on
the next ``radqc run`` (a remote worker without the workspace normalises without mappings and
says so in the result: ``mappings: "unavailable"``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from radqc.pipelines.runner.stage import ExamContext, Resources, Stage, StageOutput, process_workspace

RESULT_SCHEMA = 1
STAGE_VERSION = "2"  # 2: the images' modality fills a name that names none
_LOCK = threading.Lock()
_TABLES: dict[tuple[str, str | None, str], Any] = {}


def item_versions() -> dict[str, str]:
    """Lexicon, vocabulary and confirmed-mapping versions: a change in any re-runs the stage."""
    from radqc.pipelines.items.normalise import versions

    out = versions()
    try:
        ws = process_workspace()
        if ws is None:
            out["item_mappings"] = "unavailable"
        else:
            from radqc.pipelines.items.mappings import mapping_version

            with ws.sessions() as session:
                out["item_mappings"] = mapping_version(session)
    except Exception as exc:  # noqa: BLE001 - must never stop the run's other stages
        out["item_mappings"] = f"error: {type(exc).__name__}"[:32]
    return out


def _mappings(ctx: ExamContext) -> tuple[Any | None, str]:
    """The hospital's confirmed mappings (cached per table version) and a note for the result."""
    ws = process_workspace(ctx.store)
    if ws is None:
        return None, "unavailable"
    from radqc.pipelines.items.mappings import MappingTable, mapping_version

    with ws.sessions() as session:
        version = mapping_version(session, ctx.hospital_code)
        key = (str(ws.settings.home), ctx.hospital_code, version)
        with _LOCK:
            table = _TABLES.get(key)
        if table is None:
            table = MappingTable.load(session, ctx.hospital_code)
            with _LOCK:
                _TABLES.clear() if len(_TABLES) > 256 else None
                _TABLES[key] = table
    return table, version


def ordered_entries(ctx: ExamContext) -> list[tuple[str, str | None]]:
    """(text, local code) per ordered item; entries may be strings or {"name"/"text", "code"} dicts."""
    out: list[tuple[str, str | None]] = []
    for entry in ctx.ordered_items or ():
        if isinstance(entry, dict):
            text = str(entry.get("name") or entry.get("text") or entry.get("item_name") or "").strip()
            code = entry.get("code") or entry.get("local_code") or entry.get("item_code")
            if text or code:
                out.append((text, str(code) if code else None))
        elif entry is not None and str(entry).strip():
            out.append((str(entry).strip(), None))
    # a record may carry the hospital's item codes beside the names (extra["exam_item_codes"],
    # one per exam item): they are the local codes the confirmed mappings are keyed by
    for rec in ctx.records:
        codes = (rec.get("extra") or {}).get("exam_item_codes") if isinstance(rec, dict) else None
        names = [str(n).strip() for n in (rec.get("exam_items") or [])] if isinstance(rec, dict) else []
        if isinstance(codes, list) and len(codes) == len(names):
            by_name = dict(zip(names, codes, strict=True))
            out = [(t, c or (str(by_name[t]) if by_name.get(t) else None)) for t, c in out]
    return out


#: The exam's DICOM modality -> the word the parser reads as that modality. Used only when the
#: ordered text names no modality at all (a StudyDescription "THORAX" on a CR study).
MODALITY_HINT_WORDS = {"CT": "CT", "MR": "MR", "DX": "DR", "CR": "DR", "DR": "DR", "MG": "钼靶", "RF": "造影"}


def _with_image_modality(r: dict[str, Any], modality: str | None, normalise: Any, use_embeddings: bool) -> dict[str, Any]:
    """Retry a name that names no modality with the modality of the images (检查类型取自影像).

    Real orders and StudyDescriptions often name only the part ("THORAX", "BRAIN", "头颅平扫");
    the study's images say which modality it was. The retry is taken only when it maps with
    confidence, and the evidence says where the modality came from; otherwise the original
    result (and its review) stands.
    """
    if r.get("status") == "mapped" or not modality:
        return r
    word = MODALITY_HINT_WORDS.get(str(modality).split("\\")[0].upper())
    segments = (r.get("slots") or {}).get("segments") or []
    if word is None or any(seg.get("modality") for seg in segments):
        return r
    retry = normalise(f"{word} {r['input']}", use_embeddings=use_embeddings)
    if retry.get("status") != "mapped":
        return r
    out = dict(r)
    out.update(items=retry["items"], status="mapped", needs_review=False)
    out["evidence"] = list(r.get("evidence") or []) + [
        f"modality from the images / 检查类型取自影像: {modality} -> '{word} {r['input']}'"]
    return out


def normalise_items(ctx: ExamContext) -> StageOutput:
    """Normalise the exam's ordered items onto standard items (检查项目标准化)."""
    from radqc.pipelines.items.normalise import normalise
    from radqc.pipelines.items.parser import lexicon

    entries = ordered_entries(ctx)
    base: dict[str, Any] = {"schema": RESULT_SCHEMA, "exam_id": ctx.exam_id, "hospital": ctx.hospital_code,
                            "ordered": [], "standard_items": [], "unmapped": [], "no_order": not entries}
    if not entries:
        base["evidence"] = ["no ordered items and no StudyDescription / 无检查项目（无申请单）"]
        return StageOutput(base, manifest={"names": 0})
    mappings, mapping_note = _mappings(ctx)
    use_embeddings = not os.environ.get("RADQC_ITEMS_NO_EMBEDDINGS")
    threshold = lexicon().thresholds["review_below"]
    seen: set[tuple[str, str | None]] = set()
    for index, (text, code) in enumerate(entries):
        r = normalise(text, hospital=ctx.hospital_code, local_code=code, mappings=mappings, use_embeddings=use_embeddings)
        r = _with_image_modality(r, ctx.modality, normalise, use_embeddings)
        base["ordered"].append({"text": text, "local_code": code, "name_key": r["name_key"], "items": r["items"],
                                "status": r["status"], "needs_review": r["needs_review"], "evidence": r["evidence"],
                                "embeddings": r["embeddings"]})
        for it in r["items"]:
            k = (it["code"], it["laterality"])
            if k in seen or it["confidence"] < threshold:
                continue  # a proposal below the review threshold is not an item yet (it is in "unmapped")
            seen.add(k)
            base["standard_items"].append({
                "code": it["code"], "name": it["name"], "modality": it["modality"], "parts": it["parts"],
                "method": it["method"], "view": it.get("view"), "laterality": it["laterality"],
                "confidence": it["confidence"], "source": it["source"], "from_text_index": index})
        if r["status"] != "mapped":
            base["unmapped"].append({"text": text, "from_text_index": index, "status": r["status"],
                                     "evidence": r["evidence"][-3:]})
    base["mappings"] = mapping_note
    return StageOutput(base, manifest={"names": len(entries), "item_mappings": mapping_note})


def project_reviews(session: Any, exam_id: int, ledger_id: int, result: Any) -> None:
    """Queue the exam's names that need review; an exam counts once per name however often it re-runs."""
    from sqlalchemy import select

    from radqc.catalogue import models as m
    from radqc.pipelines.items.mappings import enqueue

    if not isinstance(result, dict) or result.get("no_order"):
        return
    pending = [o for o in result.get("ordered", []) if o.get("needs_review")]
    if not pending:
        return
    counted: set[str] = set()
    L = m.LedgerEntry
    for prior in session.scalars(select(L.result).where(L.exam_id == exam_id, L.stage == "items",
                                                        L.status == "succeeded", L.id != ledger_id)):
        for o in (prior or {}).get("ordered", []):
            if o.get("needs_review") and o.get("name_key"):
                counted.add(o["name_key"])
    done: set[str] = set()
    for o in pending:
        key = o.get("name_key") or ""
        if key in done:
            continue
        done.add(key)
        review = {"input": o.get("text", ""), "name_key": key, "items": o.get("items", []), "status": o.get("status"),
                  "needs_review": True, "evidence": o.get("evidence", [])}
        enqueue(session, review, hospital=result.get("hospital"), local_code=o.get("local_code"), exam_id=exam_id,
                count=key not in counted)


STAGES = [
    Stage(
        name="items",
        version=STAGE_VERSION,
        fn=normalise_items,
        reads=("records",),
        resources=Resources(cpus=1, memory_mb=512),
        versions=item_versions,
        description="Ordered exam-item names -> standard items, hospital mappings first / 检查项目标准化",
        project=project_reviews,
    ),
]
