"""HIS/RIS record ingest throughput (``radqc ingest-records``), SQLite and PostgreSQL.

Input: a generated export of N exam records (order + report, Chinese text, identifiers) and
2N charge lines, with 1% malformed lines, as JSON Lines (UTF-8) and as CSV (GB18030). The
baseline in the same run is reading + pydantic validation alone (no catalogue), which bounds
what the catalogue writes cost. Measured: records per second of wall time and of CPU time of
this process, for a first ingest into an empty catalogue, a re-ingest of the same file (every
record a duplicate), and the CSV/GB18030 variant; peak RSS of the process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

N_FULL = 10_000
N_QUICK = 500
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

FINDINGS = [
    "胸廓对称，双肺纹理清晰，走行自然，双肺野内未见明显实质性病变。纵隔内未见肿大淋巴结。",
    "肝脏大小形态正常，肝实质密度均匀，增强扫描未见异常强化灶。胆囊不大，胰腺、脾脏未见异常。",
    "双侧大脑半球对称，脑实质内未见异常密度影，脑室系统未见扩大，中线结构居中。",
]
IMPRESSIONS = ["胸部CT平扫未见明显异常。", "上腹部CT平扫+增强未见明显异常。", "头颅CT平扫未见明显异常。"]
ITEMS = [["胸部CT平扫"], ["上腹部CT平扫+增强"], ["头颅CT平扫"], ["胸部CT平扫", "上腹部CT平扫+增强"]]


def _records(n: int) -> list[dict | str]:
    rnd = random.Random(7)
    out: list[dict | str] = []
    for i in range(n):
        acc = f"CT{20240000000 + i}"
        hosp = f"1233010047011{rnd.randrange(20):04d}X"
        k = rnd.randrange(3)
        out.append({
            "record_type": "exam", "accession_number": acc, "hospital_code": hosp,
            "patient_id": f"{rnd.randrange(n // 2 + 1):010d}", "patient_name": "王小明", "patient_sex": rnd.choice("MF"),
            "patient_birth_date": f"19{rnd.randrange(30, 99)}-0{rnd.randrange(1, 9)}-1{rnd.randrange(9)}",
            "id_number": f"3301021980{rnd.randrange(10**8):08d}", "phone": f"139{rnd.randrange(10**8):08d}",
            "modality": "CT", "exam_items": ITEMS[rnd.randrange(len(ITEMS))], "urgency": rnd.choice(["routine", "emergency"]),
            "order_time": "2024-03-05T09:05:00+08:00", "exam_time": f"2024-03-05 1{rnd.randrange(10)}:20:00",
            "report_time": "2024-03-05T20:00:00+08:00", "technician": "李娜", "report_doctor": "赵强",
            "review_doctor": "钱文", "findings": FINDINGS[k], "impression": IMPRESSIONS[k],
        })
        for code, name, price in (("210300001", "X线计算机体层(CT)平扫", 150.0), ("210300002", "X线计算机体层(CT)增强扫描", 200.0)):
            out.append({
                "record_type": "charge", "accession_number": acc, "hospital_code": hosp, "charge_code": code,
                "charge_name": name, "quantity": 1, "unit_price": price, "amount": price,
                "charge_time": "2024-03-05T09:10:00+08:00", "catalogue": "legacy-2012", "province": "浙江",
            })
        if rnd.random() < 0.03:  # ~1% of all lines malformed
            out.append(json.dumps({"accession_number": acc, "hospital_code": hosp, "urgency": "soon"})[:-5])
    return out


def _write(folder: Path, records: list[dict | str]) -> tuple[Path, Path]:
    jsonl = folder / "his.jsonl"
    with jsonl.open("w", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    columns: list[str] = []
    for r in records:
        if isinstance(r, dict):
            columns.extend(k for k in r if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    for r in records:
        if isinstance(r, dict):
            writer.writerow({k: "|".join(v) if isinstance(v, list) else v for k, v in r.items()})
        else:
            buf.write("exam" + "," * (len(columns) + 2) + "surplus\r\n")  # more cells than the header
    csv_path = folder / "his.csv"
    csv_path.write_bytes(buf.getvalue().encode("gb18030"))
    return jsonl, csv_path


@dataclass
class Row:
    backend: str
    what: str
    records: int
    wall: float
    cpu: float
    detail: str


def _timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _workspace(home: Path, url: str):  # type: ignore[no-untyped-def]
    from radqc.workspace import Workspace

    os.environ["RADQC_DATABASE_URL"] = url
    os.environ["RADQC_SECRET_KEY"] = KEY
    return Workspace.open(home, create=True)


def run(quick: bool = False) -> str:
    from radqc.pipelines.ingest.records import ingest_records, iter_items

    n = N_QUICK if quick else N_FULL
    tmp = Path(tempfile.mkdtemp(prefix="radqc-bench-records-"))
    saved = {k: os.environ.get(k) for k in ("RADQC_DATABASE_URL", "RADQC_SECRET_KEY", "RADQC_HOME")}
    rows: list[Row] = []
    server = None
    try:
        jsonl, csv_path = _write(tmp, _records(n))
        items, wall, cpu = _timed(lambda: sum(1 for _ in iter_items(jsonl, "jsonl", "auto")))
        rows.append(Row("—", "read + validate only (baseline), JSONL", items, wall, cpu, "no catalogue"))
        backends = [("SQLite", f"sqlite:///{tmp / 'sqlite' / 'catalogue.sqlite'}",
                     f"sqlite:///{tmp / 'sqlite-csv' / 'catalogue.sqlite'}")]
        try:
            from tests.services.postgres import start_postgres

            server = start_postgres()
            if server is not None:
                backends.append(("PostgreSQL", server.create_database("bench_records"),
                                 server.create_database("bench_records_csv")))
        except Exception as exc:  # noqa: BLE001 - the SQLite numbers still stand
            print(f"PostgreSQL unavailable: {exc}")
        for label, url, csv_url in backends:
            ws = _workspace(tmp / label.lower(), url)
            first, wall, cpu = _timed(lambda ws=ws: ingest_records(ws, jsonl))
            rows.append(Row(label, "first ingest, JSONL UTF-8", first.records_seen, wall, cpu,
                            f"{first.exam_records} exam records, {first.charge_lines} charge lines, "
                            f"{first.quarantined} quarantined"))
            again, wall, cpu = _timed(lambda ws=ws: ingest_records(ws, jsonl))
            rows.append(Row(label, "re-ingest, same file", again.records_seen, wall, cpu,
                            f"{again.duplicate} duplicate, {again.quarantined} quarantined, "
                            f"{again.exam_records + again.charge_lines + again.updated} new/updated"))
            ws.close()
            ws = _workspace(tmp / (label.lower() + "-csv"), csv_url)
            first, wall, cpu = _timed(lambda ws=ws: ingest_records(ws, csv_path))
            rows.append(Row(label, "first ingest, CSV GB18030", first.records_seen, wall, cpu,
                            f"{first.encodings.get('gb18030', 0)} GB18030 records, {first.quarantined} quarantined"))
            ws.close()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if server is not None:
            server.stop()
            shutil.rmtree(server.datadir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        f"Input: {n} exam records + {2 * n} charge lines (+~1% malformed lines), generated; "
        "identifiers encrypted, records linked (no images: each creates an image-less exam). "
        "Batches of 200 records per transaction; SQLite with WAL and synchronous=FULL.",
        "",
        "| backend | run | records | wall s | records/s (wall) | CPU s | records/s (CPU) | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.backend} | {r.what} | {r.records} | {r.wall:.1f} | {r.records / r.wall:,.0f} | {r.cpu:.1f} | "
            f"{r.records / r.cpu:,.0f} | {r.detail} |"
        )
    lines += ["", f"Peak RSS of the benchmark process: {rss:.0f} MiB (streaming: memory does not grow with the file)."]
    return "\n".join(lines)
