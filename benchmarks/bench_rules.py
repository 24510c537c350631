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
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

#: Coherent exam profiles (item, standard code, DICOM body part, findings, impression, series).
PROFILES = [
    ("CT", "胸部CT平扫", "CT-CHEST-PLAIN", "CHEST",
     "胸廓对称，双肺纹理清晰，走行自然，双肺野内未见明显实质性病变。气管及主支气管通畅。纵隔内未见肿大淋巴结。",
     "胸部CT平扫未见明显异常。", "chest"),
    ("CT", "颅脑CT平扫", "CT-HEAD-PLAIN", "HEAD",
     "脑实质内未见异常密度影，脑室系统未见扩大，脑沟脑裂未见增宽，中线结构居中。", "颅脑CT平扫未见明显异常。", "head"),
    ("MR", "腰椎MR平扫", "MR-LSPINE", "LSPINE",
     "腰椎生理曲度变直，L4/5椎间盘向后突出，硬膜囊受压。", "L4/5椎间盘突出。", "lspine"),
    ("DX", "胸部正位片", "DX-CHEST-PA", "CHEST", "胸廓对称，气管居中。双肺纹理增多，未见明确实变影。心影不大，双膈面光整。",
     "双肺纹理增多，请结合临床。", "dx"),
]


def _series_for(kind: str, k: int) -> list[dict[str, Any]]:
    def one(j: int, modality: str, desc: str, thick: float, kernel: str | None, wc: list[float], ww: list[float],
            part: str, n: int) -> dict[str, Any]:
        return {"series_instance_uid": f"1.2.156.{k}.{j}", "modality": modality, "description": desc, "body_part": part,
                "n_instances": n, "slice_thickness": thick, "pixel_spacing": [0.7, 0.7], "kernel": kernel,
                "window_centers": wc, "window_widths": ww, "image_type": ["ORIGINAL", "PRIMARY", "AXIAL"],
                "protocol_name": desc, "manufacturer": "GE"}
    if kind == "chest":
        return [one(0, "CT", "Lung 1.0", 1.0, "B70f", [-600.0], [1500.0], "CHEST", 300),
                one(1, "CT", "Mediastinum 5.0", 5.0, "B30f", [40.0], [350.0], "CHEST", 60)]
    if kind == "head":
        return [one(0, "CT", "Brain 5.0", 5.0, "H30s", [40.0], [80.0], "HEAD", 30),
                one(1, "CT", "Bone 1.0", 1.0, "H70h", [500.0], [2500.0], "HEAD", 150)]
    if kind == "lspine":
        return [one(j, "MR", d, 4.0, None, [300.0], [600.0], "LSPINE", 15)
                for j, d in enumerate(["SAG T1", "SAG T2", "AX T2"])]
    return [one(0, "DX", "Chest PA", 0.0, None, [2048.0], [4096.0], "CHEST", 1)]


def uscc(k: int) -> str:
    """A unified social credit code with a valid GB 32100 check character."""
    body = f"12{330100 + k % 900:06d}{470116600 + k:09d}"
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(body, USCC_WEIGHTS, strict=True))
    return body + USCC_CHARS[(31 - total % 31) % 31]


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
        "phone": [f"{('138', '139', '150', '186', '177', '135')[k % 6]}{(k * 7919) % 100000000:08d}" for k in range(n_people)],
    }
    bad = rng.random((12, n))  # seeded-violation draws
    profile_of = rng.choice(np.array([0, 0, 1, 2, 3, 3]), n)
    hospitals = [uscc(k) for k in range(20)]
    hosp = rng.integers(0, len(hospitals), n)
    doctors = [f"{SURNAMES[k % len(SURNAMES)]}{GIVEN[k % len(GIVEN)]}医生" for k in range(120)]
    base = datetime(2024, 1, 1, tzinfo=cst)
    exam_s = rng.integers(0, 365 * 86400, n)
    order_d = rng.integers(5 * 60, 3 * 3600, n)
    report_d = rng.integers(10 * 60, 60 * 60, n)
    review_d = rng.integers(5 * 60, 40 * 60, n)
    upload_d = rng.integers(5, 55, n)
    # report texts: each profile's template with small variations (structured-report templates)
    texts = {k: [p[4] + ("" if v == 0 else f"随访对比第{v}次。") for v in range(500)] for k, p in enumerate(PROFILES)}
    series_pool = {k: [_series_for(p[6], 1000 * k + v) for v in range(50)] for k, p in enumerate(PROFILES)}

    def iso(seconds: int) -> str:
        return (base + timedelta(seconds=int(seconds))).isoformat()

    cols: dict[str, list[Any]] = {k: [] for k in (
        "accession_number", "hospital_code", "patient_id", "patient_name", "patient_sex", "patient_birth_date", "id_number",
        "phone", "modality", "exam_items", "urgency", "order_time", "exam_time", "report_time", "review_time",
        "upload_time", "technician", "report_doctor", "review_doctor", "findings", "impression", "index_string",
        "exam_item_codes",
        "dicom_modalities", "series_count", "instance_count", "study_instance_uid", "dicom_accession_number",
        "dicom_patient_sex", "dicom_study_time", "body_parts", "series", "duplicate_sop_uids", "index_series_count",
        "index_instance_count", "now")}
    now = "2025-01-01T00:00:00+08:00"
    for i in range(n):
        p = int(people_ids[i])
        prof = int(profile_of[i])
        m, item, code, part, _, impression, _ = PROFILES[prof]
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
        cols["exam_items"].append([item])
        cols["exam_item_codes"].append([code])
        urgent = bad[4, i] < 0.15
        cols["urgency"].append("emergency" if urgent else "routine")
        cols["order_time"].append(iso(e - int(order_d[i])))
        cols["exam_time"].append(iso(e))
        late = 3 * 3600 if bad[5, i] < 0.03 else 0
        rep = e + int(report_d[i]) + late
        cols["report_time"].append(iso(rep))
        cols["review_time"].append(iso(rep + int(review_d[i])) if bad[6, i] > 0.01 else iso(rep - 600))
        cols["upload_time"].append(iso(e + int(upload_d[i])))
        d = int(hosp[i]) * 6
        cols["technician"].append(doctors[(d + i % 3) % 120])
        rd = doctors[(d + 3 + i % 2) % 120]
        cols["report_doctor"].append(rd)
        cols["review_doctor"].append(rd if bad[7, i] < 0.02 else doctors[(d + 5) % 120])
        cols["findings"].append("" if bad[8, i] < 0.01 else texts[prof][i % 500])
        cols["impression"].append(impression)
        stamp = (base + timedelta(seconds=e)).strftime("%Y%m%d%H%M")
        cols["index_string"].append(f"{p:026d}|{stamp}|{part[:4]:0>9}|{int(hosp[i]):013d}|{hospitals[hosp[i]]}")
        series = series_pool[prof][i % 50]
        cols["dicom_modalities"].append([m])
        cols["series_count"].append(len(series))
        cols["instance_count"].append(sum(s["n_instances"] for s in series))
        cols["study_instance_uid"].append(f"1.2.156.112605.{i}")
        cols["dicom_accession_number"].append(acc)
        cols["dicom_patient_sex"].append(persons["sex"][p] if bad[9, i] > 0.01 else ("F" if persons["sex"][p] == "M" else "M"))
        cols["dicom_study_time"].append(iso(e))
        cols["body_parts"].append([part])
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

    import threading

    def available_mb() -> float:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
        return 0.0

    base = available_mb()
    lowest = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            lowest[0] = min(lowest[0], available_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    c0 = cpu()
    t0 = time.perf_counter()
    batch = evaluate_batch(cols, ruleset, workers=workers)
    t_batch = time.perf_counter() - t0
    cpu_s = cpu() - c0
    stop.set()
    sampler.join()
    mem_used = rss_input + (base - lowest[0])  # input columns + what the evaluation took from the system
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
        "gen_s": t_gen, "batch_s": t_batch, "cpu_s": cpu_s, "mem_used_mb": mem_used, "phases": batch.seconds, "rss_input_mb": rss_input,
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
        f"| worker time summed over row spans: factorising columns / {r['phases'].get('derived_columns', 0)} shared "
        f"function-call columns / rules | {r['phases'].get('factorise', 0):.1f} s / {r['phases'].get('derived', 0):.1f} s / "
        f"{r['phases'].get('rules', 0):.1f} s | |",
        f"| parent: item standards per exam, scores and grades | {r['phases'].get('standards', 0):.1f} s + scoring | |",
        f"| CPU time (all processes) | {r['cpu_s']:.1f} s | |",
        f"| memory: input columns + the largest drop of the system's available memory during the evaluation "
        f"(parent and workers together; other jobs on the machine count too) | **{r['mem_used_mb']:,.0f} MB** | <= 4 GB |",
        f"| peak RSS: parent (input columns, scores) / largest worker (one span of <= 200k rows; forked, so input pages are shared until touched) | "
        f"{r['rss_self_mb']:,.0f} MB / {r['rss_child_mb']:,.0f} MB | |",
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
              "the (derived) columns it reads, and the outcome scattered to the rows with numpy. 2 forked workers "
              "take spans of at most 200k rows end to end (one fresh process per span). The per-exam path runs the "
              "same compiled closures (a test compares them row by row). The machine is shared with other jobs, so wall times vary; CPU time is the steadier figure."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))
