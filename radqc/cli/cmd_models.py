"""``radqc models list|show|verify``: the model registry and the configured slots / 模型注册表与槽位.

Reads only the registry (``models/registry.yaml``) and the slot configuration
(``RADQC_MODEL_<SLOT>``, ``$RADQC_HOME/models.yaml``); nothing here imports torch or loads a
model, so it answers in well under a second. ``verify`` re-hashes every weights file and exits
1 when any entry or configured slot is broken (a CI or deployment check).
"""

from __future__ import annotations

from typing import Any

import typer

from radqc.cli.output import console, emit, stdout

JSON_HELP = "Machine-readable output / 输出 JSON"


def register(app: typer.Typer) -> None:
    models = typer.Typer(help="Model registry and slots / 模型注册表与槽位", no_args_is_help=True)
    models.command("list")(models_list)
    models.command("show")(models_show)
    models.command("verify")(models_verify)
    app.add_typer(models, name="models")


def check_model(info: Any) -> dict[str, Any]:
    """One registry entry's checks: weights present, sha256 as registered, card present, labels load."""
    from radqc.models.registry import ModelError, sha256_file

    checks: dict[str, Any] = {}
    path = info.weights_path
    checks["weights_exist"] = path.is_file()
    if checks["weights_exist"]:
        actual = sha256_file(path)
        checks["sha256_ok"] = bool(info.sha256) and actual == info.sha256
        checks["sha256_actual"] = actual
        checks["size_bytes"] = path.stat().st_size
    else:
        checks["sha256_ok"] = False
    card = info.card_path
    checks["card_exists"] = bool(card and card.is_file())
    if info.labels:
        try:
            checks["labels_ok"] = len(info.label_set().structures) > 0
        except ModelError as exc:
            checks["labels_ok"] = False
            checks["labels_error"] = str(exc)
    else:
        checks["labels_ok"] = True
    checks["ok"] = all(checks[k] for k in ("weights_exist", "sha256_ok", "card_exists", "labels_ok"))
    return checks


def _rows() -> list[dict[str, Any]]:
    from radqc.models.registry import list_models

    rows = []
    for info in list_models():
        rows.append({
            "name": info.name, "version": info.version, "task": info.task, "modality": info.modality,
            "labels": info.labels, "metrics": info.metrics, "sha256": info.sha256, "card": info.card,
            "check": check_model(info),
        })
    return rows


def _metrics_text(metrics: dict[str, Any]) -> str:
    parts = []
    for key, value in (metrics or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(parts[:4]) or "-"


def _print_slots(slots: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="slots / 槽位")
    for col in ("slot", "kind", "source", "model", "version", "hash"):
        table.add_column(col, no_wrap=col in ("slot", "kind", "model"))
    for s in slots:
        if s.get("ok"):
            digest = (s.get("sha256") or s.get("bundle_hash") or "")[:12]
            table.add_row(s["slot"], s.get("kind", ""), s.get("source", ""), str(s.get("name", "")),
                          str(s.get("version", "")), digest)
        else:
            table.add_row(s["slot"], "-", "-", "[red]error / 错误[/red]", "", "")
    stdout.print(table)
    for s in slots:
        if not s.get("ok"):
            stdout.print(f"{s['slot']}: {s['error']}", markup=False, highlight=False, soft_wrap=True)


def models_list(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Registered models and what fills each slot / 列出已注册模型及槽位配置."""
    from radqc.models.slots import describe_slots

    data = {"models": _rows(), "slots": describe_slots()}

    def human(d: dict[str, Any]) -> None:
        from rich.table import Table

        table = Table(title=f"models / 模型 ({len(d['models'])})")
        for col in ("name", "version", "task", "modality", "metrics", "sha256"):
            table.add_column(col, no_wrap=col in ("name", "version"))
        for m in d["models"]:
            check = m["check"]
            status = "ok" if check["ok"] else "[red]FAIL[/red]"
            table.add_row(m["name"], m["version"], m["task"], m["modality"], _metrics_text(m["metrics"]),
                          f"{(m['sha256'] or '')[:12]} {status}")
        stdout.print(table)
        _print_slots(d["slots"])

    emit(data, as_json, human)


def models_show(
    name: str = typer.Argument(..., help="Registry model name, or a slot name / 模型名或槽位名"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """One model's registry entry and checks (or one slot's configuration) / 显示模型详情."""
    from radqc.models.registry import ModelError, get_model
    from radqc.models.slots import SLOTS, slot_config, slot_versions

    data: dict[str, Any]
    if name in SLOTS:
        try:
            data = {"slot": name, "config": slot_config(name).to_dict(), "versions": slot_versions(name)}
        except ModelError as exc:
            console.print(f"error / 错误: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from exc
    else:
        try:
            info = get_model(name)
        except ModelError as exc:
            console.print(f"error / 错误: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from exc
        data = {**info.to_dict(), "check": check_model(info)}

    def human(d: dict[str, Any]) -> None:
        import yaml

        stdout.print(yaml.safe_dump(d, allow_unicode=True, sort_keys=False), markup=False, highlight=False)

    emit(data, as_json, human)


def models_verify(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Re-hash every weights file, check cards, label sets and slots; exit 1 on any failure / 校验模型."""
    from radqc.models.slots import describe_slots

    rows = _rows()
    slots = describe_slots()
    failures = [f"model {r['name']}" for r in rows if not r["check"]["ok"]]
    # a slot whose default model is simply not registered yet is reported, and fails verify too
    failures += [f"slot {s['slot']}" for s in slots if not s.get("ok")]
    data = {"ok": not failures, "failures": failures, "models": rows, "slots": slots}

    def human(d: dict[str, Any]) -> None:
        for m in d["models"]:
            c = m["check"]
            bad = [k for k in ("weights_exist", "sha256_ok", "card_exists", "labels_ok") if not c[k]]
            line = "ok" if not bad else "FAIL / 失败: " + ", ".join(bad)
            stdout.print(f"{m['name']} {m['version']}: {line}", markup=False, highlight=False)
        _print_slots(d["slots"])
        stdout.print("all ok / 全部通过" if d["ok"] else f"failed / 未通过: {', '.join(d['failures'])}",
                     markup=False, highlight=False)

    emit(data, as_json, human)
    if failures:
        raise typer.Exit(1)
