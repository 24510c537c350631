"""Rule QC: the full bundled library over 1,000,000 exam index records, and one exam.

Target (issue 4): <= 60 s on 2 cores with <= 4 GB memory for 10^6 records; one exam <= 5 ms.

Records are generated column-wise with the value distributions of a regional imaging cloud:
unique accession numbers and times (to the second), a patient pool (people come back), pools
of doctors per hospital, templated report texts (a pool of a few thousand distinct
findings/impression texts, as structured-report templates produce), and seeded violations
in every dimension (blank fields, bad ID checksums, bad phones, late reports, same report
and review doctor, wrong order of times). The measurement runs in a fresh process so its
peak RSS is the benchmark's own (input columns included).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from typing import Any

CITIES = ["330102", "330106", "320102", "440103", "110101", "310104", "510104", "420102"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国文斌宇浩凯"
FINDINGS = [
    "胸廓对称，双肺纹理清晰，走行自然，双肺野内未见明显实质性病变。气管及主支气管通畅。纵隔内未见肿大淋巴结。",
    "右肺上叶见一结节影，大小约{n}mm，边缘光整。余肺野清晰。心影大小形态未见异常。",
    "左侧膝关节间隙变窄，关节面骨质增生硬化，髌骨上缘骨赘形成。",
    "脑实质内未见异常密度影，脑室系统未见扩大，中线结构居中。",
    "肝脏大小形态正常，肝实质内见一类圆形低密度影，大小约{n}mm。胆囊不大，壁不厚。",
    "前列腺体积增大，约{n}mm，信号不均匀。膀胱充盈可。",
    "子宫大小形态正常，左侧卵巢见囊性灶，大小约{n}mm。",
    "腰椎生理曲度变直，L4/5椎间盘向后突出，硬膜囊受压。",
]
IMPRESSIONS = [
    "胸部CT平扫未见明显异常。", "右肺上叶结节，建议随访。", "左膝关节退行性变。", "颅脑CT平扫未见明显异常。",
    "肝脏占位，考虑血管瘤可能。", "前列腺增生。", "左侧卵巢囊肿。", "L4/5椎间盘突出。", "右侧气胸，请结合临床。",
]
ITEMS_BY_MODALITY = {
    "CT": ["胸部CT平扫", "颅脑CT平扫", "上腹部CT平扫+增强", "腰椎CT平扫", "胸部低剂量CT"],
    "MR": ["颅脑MR平扫", "膝关节MR平扫", "腰椎MR平扫"],
    "DX": ["胸部正位片", "膝关节正侧位片", "腰椎正侧位片"],
}


def _id_number(rng: Any, k: int) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    body = f"{CITIES[k % len(CITIES)]}{1940 + k % 70:04d}{1 + k % 12:02d}{1 + k % 28:02d}{k % 1000:03d}"
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    return body + check


def make_columns(n: int, seed: int = 11, standards: list[str] | None = None) -> dict[str, list[Any]]:
    """n exam index records as columns (fact name -> list), with seeded violations."""
    from datetime import datetime, timedelta, timezone

    import numpy as np

    rng = np.random.default_rng(seed)
    cst = timezone(timedelta(hours=8))
    n_people = max(10, n // 5)
    people_ids = rng.integers(0, n_people, n)
    persons = {
        "name": [SURNAMES[k % len(SURNAMES)] + GIVEN[(k // 7) % len(GIVEN)] + GIVEN[(k // 3) % len(GIVEN)] for k in range(n_people)],
        "sex": ["M" if k % 2 else "F" for k in range(n_people)],
        "id": [_id_number(rng, k) for k in range(n_people)],
        "phone": [f"1{3 + k % 7}{k % 10}{(k * 7919) % 100000000:08d}" for k in range(n_people)],
    }
    bad = rng.random((12, n))  # seeded-violation draws
    modality_pool = np.array(["CT", "CT", "CT", "MR", "DX", "DX"])
    modality = modality_pool[rng.integers(0, len(modality_pool), n)]
    item_pool = {m: v + list(standards or []) for m, v in ITEMS_BY_MODALITY.items()}
    hospitals = [f"1233010047011{k:04d}X" for k in range(20)]
    hosp = rng.integers(0, len(hospitals), n)
    doctors = [f"{SURNAMES[k % len(SURNAMES)]}{GIVEN[k % len(GIVEN)]}医生" for k in range(120)]
    base = datetime(2024, 1, 1, tzinfo=cst)
    exam_s = rng.integers(0, 365 * 86400, n)
    order_d = rng.integers(5 * 60, 3 * 3600, n)
    report_d = rng.integers(10 * 60, 150 * 60, n)
    review_d = rng.integers(5 * 60, 100 * 60, n)
    upload_d = rng.integers(10, 400, n)
    texts = [f.replace("{n}", str(5 + k % 40)) for k in range(60) for f in FINDINGS]
    series_pool = []
    for k in range(300):
        m = ["CT", "MR", "DX"][k % 3]
        series_pool.append([{"series_instance_uid": f"1.2.156.{k}.{j}", "modality": m, "description": "AX", "body_part": "CHEST",
                             "n_instances": 40 + j, "slice_thickness": [1.0, 5.0, None][(k + j) % 3], "pixel_spacing": [0.7, 0.7],
                             "kernel": ["B30f", "B70f", None][j % 3], "window_centers": [40.0], "window_widths": [400.0],
                             "image_type": ["ORIGINAL", "PRIMARY", "AXIAL"], "protocol_name": "Chest", "manufacturer": "GE"}
                            for j in range(1 + k % 4)])

    def iso(seconds: int) -> str:
        return (base + timedelta(seconds=int(seconds))).isoformat()

    cols: dict[str, list[Any]] = {k: [] for k in (
        "accession_number", "hospital_code", "patient_id", "patient_name", "patient_sex", "patient_birth_date", "id_number",
        "phone", "modality", "exam_items", "urgency", "order_time", "exam_time", "report_time", "review_time",
        "upload_time", "technician", "report_doctor", "review_doctor", "findings", "impression", "index_string",
        "dicom_modalities", "series_count", "instance_count", "study_instance_uid", "dicom_accession_number",
        "dicom_patient_sex", "dicom_study_time", "body_parts", "series", "duplicate_sop_uids", "index_series_count",
        "index_instance_count", "now")}
    now = "2025-01-01T00:00:00+08:00"
    item_lists = {m: [[x] for x in pool] for m, pool in item_pool.items()}
    for i in range(n):
        p = int(people_ids[i])
        m = str(modality[i])
        acc = f"{m}{i:09d}"
        e = int(exam_s[i])
        cols["accession_number"].append("" if bad[0, i] < 0.01 else acc)
        cols["hospital_code"].append(hospitals[hosp[i]])
        cols["patient_id"].append(f"P{p:08d}")
        cols["patient_name"].append(None if bad[1, i] < 0.01 else persons["name"][p])
        cols["patient_sex"].append(persons["sex"][p])
        idn = persons["id"][p]
        cols["patient_birth_date"].append(f"{idn[6:10]}-{idn[10:12]}-{idn[12:14]}")
        cols["id_number"].append(idn[:-1] + ("0" if idn[-1] != "0" else "1") if bad[2, i] < 0.02 else idn)
        cols["phone"].append(persons["phone"][p][:10] if bad[3, i] < 0.02 else persons["phone"][p])
        cols["modality"].append(m)
        pool = item_lists[m]
        cols["exam_items"].append(pool[i % len(pool)])
        urgent = bad[4, i] < 0.15
        cols["urgency"].append("emergency" if urgent else "routine")
        cols["order_time"].append(iso(e - int(order_d[i])))
        cols["exam_time"].append(iso(e))
        late = 4 * 3600 if bad[5, i] < 0.05 else 0
        rep = e + int(report_d[i]) + late
        cols["report_time"].append(iso(rep))
        cols["review_time"].append(iso(rep + int(review_d[i])) if bad[6, i] > 0.01 else iso(rep - 600))
        cols["upload_time"].append(iso(e + int(upload_d[i])))
        d = int(hosp[i]) * 6
        cols["technician"].append(doctors[(d + i % 6) % 120])
        rd = doctors[(d + 1 + i % 5) % 120]
        cols["report_doctor"].append(rd)
        cols["review_doctor"].append(rd if bad[7, i] < 0.02 else doctors[(d + 2 + i % 3) % 120])
        cols["findings"].append("" if bad[8, i] < 0.01 else texts[i % len(texts)])
        cols["impression"].append(IMPRESSIONS[(i // 7) % len(IMPRESSIONS)])
        cols["index_string"].append(None)
        series = series_pool[i % len(series_pool)]
        cols["dicom_modalities"].append([m])
        cols["series_count"].append(len(series))
        cols["instance_count"].append(sum(s["n_instances"] for s in series))
        cols["study_instance_uid"].append(f"1.2.156.112605.{i}")
        cols["dicom_accession_number"].append(acc)
        cols["dicom_patient_sex"].append(persons["sex"][p] if bad[9, i] > 0.01 else ("F" if persons["sex"][p] == "M" else "M"))
        cols["dicom_study_time"].append(iso(e))
        cols["body_parts"].append(["CHEST"])
        cols["series"].append(series)
        cols["duplicate_sop_uids"].append(0)
        cols["index_series_count"].append(len(series) if bad[10, i] > 0.01 else len(series) + 1)
        cols["index_instance_count"].append(None)
        cols["now"].append(now)
    return cols


def _measure(n: int, workers: int, queue: Any) -> None:
    from radqc.qc_rules.engine.evaluate import evaluate_batch, evaluate_exam
    from radqc.qc_rules.engine.loader import load_library

    ruleset = load_library()
    names = [s.name_zh for s in ruleset.standards.values()][:40]
    t0 = time.perf_counter()
    cols = make_columns(n, standards=names)
    t_gen = time.perf_counter() - t0
    rss_input = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    def cpu() -> float:
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    c0 = cpu()
    t0 = time.perf_counter()
    batch = evaluate_batch(cols, ruleset, workers=workers)
    t_batch = time.perf_counter() - t0
    cpu_s = cpu() - c0
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # one exam at a time: distinct rows through the single-exam path (no memo)
    keys = list(cols)
    sample = [{k: cols[k][i] for k in keys} for i in range(0, min(n, 2000))]
    times = []
    for facts in sample:
        s = time.perf_counter()
        evaluate_exam(facts, ruleset)
        times.append(time.perf_counter() - s)
    times.sort()
    counts = batch.failure_counts()
    queue.put({
        "n": n, "rules": len(ruleset.enabled_rules()), "standards": len(ruleset.standards), "version": ruleset.version,
        "gen_s": t_gen, "batch_s": t_batch, "cpu_s": cpu_s, "phases": batch.seconds, "rss_input_mb": rss_input,
        "rss_self_mb": rss_self, "rss_child_mb": rss_child, "workers": workers,
        "single_mean_ms": 1000 * sum(times) / len(times), "single_p99_ms": 1000 * times[int(len(times) * 0.99) - 1],
        "failing_rules": len(counts), "failures": sum(counts.values()), "error_rules": len(batch.errors),
        "errors": dict(list(batch.errors.items())[:5]), "mean_score": float(batch.scores.mean()) if n else 0.0,
    })


def measure(n: int, workers: int = 2) -> dict[str, Any]:
    """Run one measurement in a fresh process (so its peak RSS is its own)."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(n, workers, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def run(quick: bool = False) -> str:
    n = 20_000 if quick else 1_000_000
    r = measure(n, workers=2)
    lines = [
        f"Full rule library (ruleset `{r['version']}`: {r['rules']} enabled rules, {r['standards']} item standards) "
        f"over **{r['n']:,} exam index records** with `evaluate_batch(columns, ruleset, workers={r['workers']})`.",
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        f"| batch evaluation, {r['n']:,} records | **{r['batch_s']:.1f} s** ({r['n'] / max(r['batch_s'], 1e-9):,.0f} records/s) | <= 60 s |",
        f"| of which: factorising columns / {r['phases'].get('derived_columns', 0)} shared function-call columns / rules / scoring | "
        f"{r['phases'].get('factorise', 0):.1f} s / {r['phases'].get('derived', 0):.1f} s / {r['phases'].get('rules', 0):.1f} s / "
        f"{r['batch_s'] - r['phases'].get('factorise', 0) - r['phases'].get('derived', 0) - r['phases'].get('rules', 0):.1f} s | |",
        f"| CPU time (all processes) | {r['cpu_s']:.1f} s | |",
        f"| peak RSS: parent (input columns + evaluation) / each worker | {r['rss_self_mb']:,.0f} MB / {r['rss_child_mb']:,.0f} MB "
        f"(workers are forked: shared pages counted in both) | <= 4 GB |",
        f"| one exam (`evaluate_exam`, 2,000 distinct exams) | mean {r['single_mean_ms']:.2f} ms, p99 {r['single_p99_ms']:.2f} ms | <= 5 ms |",
        f"| generating the input columns (not part of the evaluation) | {r['gen_s']:.1f} s | |",
        f"| rules with failures / deductions / rules with evaluation errors | {r['failing_rules']} / {r['failures']:,} / {r['error_rules']} | |",
        f"| mean score | {r['mean_score']:.1f} | |",
    ]
    if r["errors"]:
        lines += ["", "Evaluation errors (first per rule): " + "; ".join(f"`{k}`: {v[:120]}" for k, v in r["errors"].items())]
    lines += ["", "How: every call of a library function whose arguments are facts becomes a *derived column* shared by "
              "all rules making that call (computed once per distinct argument combination, or row by row in chunks "
              "when the arguments are unique per row); each rule is then evaluated once per distinct combination of "
              "the (derived) columns it reads, and the outcome scattered to the rows with numpy. Work is split "
              "between 2 forked workers. The per-exam path runs the same compiled closures (a test compares them "
              "row by row). The machine is shared with other jobs, so wall times vary; CPU time is the steadier figure."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))
