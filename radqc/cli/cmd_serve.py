"""``radqc serve`` (the API and web pages), ``radqc users``, ``radqc authorise``, ``radqc audit-log``.

Secrets come from the environment only: a password is read from a prompt or from the
environment variable named by ``--password-env`` (never a command-line argument, which
would land in shell history and the process list).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from radqc.cli.output import console, emit


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    users = typer.Typer(help="Service users and API keys / 服务用户与密钥", no_args_is_help=True)
    users.command("add")(users_add)
    users.command("list")(users_list)
    users.command("passwd")(users_passwd)
    users.command("disable")(users_disable)
    users.command("enable")(users_enable)
    users.command("api-key")(users_api_key)
    users.command("revoke-key")(users_revoke_key)
    app.add_typer(users, name="users")
    auth = typer.Typer(help="Patient authorisations for cross-hospital viewing / 患者授权调阅", no_args_is_help=True)
    auth.command("grant")(authorise_grant)
    auth.command("revoke")(authorise_revoke)
    auth.command("list")(authorise_list)
    app.add_typer(auth, name="authorise")
    audit = typer.Typer(help="The tamper-evident access log / 访问日志（防篡改）", no_args_is_help=True)
    audit.command("verify")(audit_verify)
    audit.command("anchor")(audit_anchor)
    audit.command("show")(audit_show)
    app.add_typer(audit, name="audit-log")


def _fail(message: str) -> None:
    console.print(f"[red]error / 错误:[/] {message}")
    raise typer.Exit(2)


def _workspace():  # type: ignore[no-untyped-def]
    from radqc.workspace import Workspace, WorkspaceError

    try:
        return Workspace.open()
    except WorkspaceError as exc:
        _fail(str(exc))


def _password(password_env: str | None, confirm: bool = True) -> str:
    if password_env:
        value = os.environ.get(password_env)
        if not value:
            _fail(f"environment variable {password_env} is empty / 环境变量为空")
        return str(value)
    return str(typer.prompt("password / 密码", hide_input=True, confirmation_prompt=confirm))


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default; put a TLS proxy in front)."),
    port: int = typer.Option(8600, help="TCP port."),
    workers: int = typer.Option(1, help="uvicorn worker processes."),
    detach: bool = typer.Option(False, "--detach", help="Start in the background (log <home>/serve.log, pid "
                                                       "<home>/serve.pid) and return once it answers."),
    stop: bool = typer.Option(False, "--stop", help="Stop the background service started with --detach."),
    as_json: bool = typer.Option(False, "--json", help="With --detach/--stop: machine-readable result."),
) -> None:
    """Run the API, DICOMweb and the doctor's pages / 启动服务."""
    ws = _workspace()
    home = ws.settings.home
    ws.close()
    if stop:
        out = stop_detached(home)
        emit(out, as_json, lambda d: console.print(
            f"stopped / 已停止 (pid {d['pid']})" if d["stopped"] else "no service running / 无运行中的服务"))
        return
    if detach:
        try:
            info = start_detached(home, host=host, port=port, workers=workers)
        except ServeError as exc:
            _fail(str(exc))
        emit(info, as_json, lambda d: console.print(
            f"RadQC service / 服务: {d['url']}  (pid {d['pid']}, log {d['log']}; stop: radqc serve --stop)"))
        return
    import uvicorn

    console.print(f"RadQC service / 服务: http://{host}:{port}/  (API docs /docs)")
    if workers > 1:
        uvicorn.run("radqc.serving.asgi:app", host=host, port=port, workers=workers, log_level="warning")
    else:
        from radqc.serving.asgi import build

        uvicorn.run(build(), host=host, port=port, log_level="warning")


# -- background service (radqc serve --detach / --stop, and the demo's serve step) --------------
PID_FILE = "serve.pid"
LOG_FILE = "serve.log"
#: Marks our uvicorn in /proc/<pid>/cmdline, so --stop never signals a recycled pid.
_ASGI_TARGET = "radqc.serving.asgi:build"


class ServeError(RuntimeError):
    pass


def port_is_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", start: int = 8600, tries: int = 100) -> int:
    """``start`` when free, else the next free port above it."""
    for port in range(start, start + tries):
        if port_is_free(host, port):
            return port
    raise ServeError(f"no free port in {start}..{start + tries - 1} / 无可用端口")


def _read_pid(home: Path) -> int | None:
    try:
        return int((home / PID_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _is_our_server(pid: int) -> bool:
    """True when ``pid`` runs our detached uvicorn (checked through /proc where it exists)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return _ASGI_TARGET in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
    return True


def _wait_healthy(url: str, proc: Any, timeout: float) -> bool:
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}healthz", timeout=2) as response:  # noqa: S310 - our loopback URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def start_detached(home: Path, *, host: str = "127.0.0.1", port: int = 8600, workers: int = 1,
                   timeout: float = 90.0) -> dict[str, Any]:
    """Start uvicorn over the workspace at ``home`` as a background process (its own session,
    so closing the terminal does not stop it and --stop can end all its workers at once).
    Returns once GET /healthz answers: ``{"url", "pid", "host", "port", "workers", "log"}``.

    The child gets the workspace through the environment (RADQC_HOME; RADQC_DATABASE_URL and
    the secrets as already set), never on its command line."""
    import subprocess
    import sys

    home = Path(home)
    previous = _read_pid(home)
    if previous is not None and _is_our_server(previous):
        raise ServeError(f"a service is already running (pid {previous}); radqc serve --stop first "
                         "/ 服务已在运行，请先停止")
    if not port_is_free(host, port):
        raise ServeError(f"port {port} is in use / 端口已被占用")
    env = dict(os.environ, RADQC_HOME=str(home))
    log_path = home / LOG_FILE
    cmd = [sys.executable, "-m", "uvicorn", _ASGI_TARGET, "--factory", "--host", host, "--port", str(port),
           "--workers", str(max(1, workers)), "--log-level", "warning", "--no-access-log"]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, cwd=str(home))
    (home / PID_FILE).write_text(f"{proc.pid}\n")
    url = f"http://{host}:{port}/"
    if not _wait_healthy(url, proc, timeout):
        stop_detached(home)
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise ServeError(f"the service did not start / 服务未能启动; {log_path}:\n{tail}")
    return {"url": url, "pid": proc.pid, "host": host, "port": port, "workers": max(1, workers),
            "log": str(log_path)}


def stop_detached(home: Path, timeout: float = 15.0) -> dict[str, Any]:
    """Stop the background service of ``home`` (SIGTERM to its process group, SIGKILL after
    ``timeout``); removes the pid file. ``{"stopped": bool, "pid": int | None}``."""
    import signal
    import time

    home = Path(home)
    pid = _read_pid(home)
    stopped = False
    if pid is not None and _is_our_server(pid):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            # SIGKILL is delivered asynchronously: wait until the process is gone, so a caller that
            # starts a new service (or checks the pid) right after does not meet the old one (seen
            # on a loaded 2-core CI run, where the graceful shutdown outlasted the timeout)
            kill_deadline = time.monotonic() + 5.0
            while time.monotonic() < kill_deadline and _alive(pid):
                time.sleep(0.05)
        stopped = True
    (home / PID_FILE).unlink(missing_ok=True)
    return {"stopped": stopped, "pid": pid}


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a child of this process is reaped here)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        zombie = "State:\tZ" in status.read_text()
    except OSError:
        return True
    if not zombie:
        return True
    # "Z" can show while the main thread has exited and other threads still run: our child is
    # gone only once waitpid reaps it, or it lingers as a zombie that os.kill(pid, 0) still finds
    # (a race seen on CI); a zombie that is not our child is its parent's (or init's) to reap
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done != pid


def users_add(
    username: str = typer.Argument(...),
    role: str = typer.Option(..., help="doctor, qc_expert_l1, qc_expert_l2, data_engineer, auditor, hospital_admin, "
                                       "admin, patient_portal"),
    hospital: str = typer.Option(None, help="Hospital code (needed for doctor and hospital_admin)."),
    hospital_name: str = typer.Option(None, help="Register the hospital with this name when the catalogue does not "
                                                 "know its code yet (accounts made before its first upload)."),
    display_name: str = typer.Option(None, "--name", help="Display name (shown on watermarks)."),
    password_env: str = typer.Option(None, help="Read the password from this environment variable."),
    no_password: bool = typer.Option(False, help="A system account that only uses API keys."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a user / 新建用户."""
    from radqc.serving.accounts import AccountError, create_user, hospital_by_code, user_summary

    password = None if no_password else _password(password_env)
    ws = _workspace()
    try:
        with ws.transaction() as s:
            if hospital and hospital_name:
                hospital_by_code(s, hospital, create=True, name=hospital_name)
            user = create_user(s, username, role, password=password, hospital_code=hospital, display_name=display_name)
            out = user_summary(user, hospital)
    except (AccountError, ValueError) as exc:
        _fail(str(exc))
    emit(out, as_json, lambda d: console.print(f"user {d['username']} ({d['role']}) created / 已创建"))


def users_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List users / 用户列表."""
    from sqlalchemy import select

    from radqc.catalogue import models as m
    from radqc.serving.accounts import user_summary

    ws = _workspace()
    with ws.sessions() as s:
        rows = s.execute(select(m.AppUser, m.Hospital.code).outerjoin(m.Hospital, m.Hospital.id == m.AppUser.hospital_id)
                         .order_by(m.AppUser.username)).all()
        out = [user_summary(u, code) for u, code in rows]

    def human(items: list[dict[str, Any]]) -> None:
        for d in items:
            console.print(f"{d['username']:<20} {d['role']:<16} {d['hospital'] or '-':<12} "
                          f"{'active' if d['active'] else 'disabled'}")

    emit(out, as_json, human)


def _apply(change: Callable[[Any], object], done: str) -> None:
    """Run one account change in a transaction; a refused change is a bilingual error (exit 2)."""
    from radqc.serving.accounts import AccountError

    try:
        with _workspace().transaction() as s:
            change(s)
    except (AccountError, ValueError) as exc:
        _fail(str(exc))
    console.print(done)


def users_passwd(username: str = typer.Argument(...), password_env: str = typer.Option(None)) -> None:
    """Set a user's password (ends their tokens) / 重设密码."""
    from radqc.serving.accounts import set_password

    password = _password(password_env)
    _apply(lambda s: set_password(s, username, password), f"password of {username} set / 已重设")


def _set_active(username: str, active: bool) -> None:
    from radqc.serving.accounts import set_active

    _apply(lambda s: set_active(s, username, active),
           f"{username}: {'enabled / 已启用' if active else 'disabled / 已停用'}")


def users_disable(username: str = typer.Argument(...)) -> None:
    """Disable a user (tokens end at once) / 停用用户."""
    _set_active(username, False)


def users_enable(username: str = typer.Argument(...)) -> None:
    """Enable a user / 启用用户."""
    _set_active(username, True)


def users_api_key(username: str = typer.Argument(...), name: str = typer.Option(..., help="What the key is for."),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Create an API key for a (system) user; it is shown once / 生成 API 密钥（仅显示一次）."""
    from radqc.serving.accounts import AccountError, create_api_key
    from radqc.serving.settings import load_serving_settings

    ws = _workspace()
    settings = load_serving_settings(ws.master_key)
    try:
        with ws.transaction() as s:
            key, full = create_api_key(s, username, name, settings.api_key_secret)
            out = {"username": username, "name": name, "prefix": key.prefix, "api_key": full}
    except AccountError as exc:
        _fail(str(exc))
    emit(out, as_json, lambda d: console.print(f"API key (shown once / 仅显示一次): {d['api_key']}"))


def users_revoke_key(prefix: str = typer.Argument(...)) -> None:
    """Revoke an API key by its prefix / 撤销密钥."""
    from radqc.serving.accounts import revoke_api_key

    _apply(lambda s: revoke_api_key(s, prefix), f"API key {prefix} revoked / 已撤销")


def authorise_grant(
    exam: int = typer.Option(None, help="Authorise the patient of this exam."),
    id_number_env: str = typer.Option(None, help="Or: the env variable holding the patient's national ID."),
    hospital: str = typer.Option(None, help="The hospital allowed to view (default: every hospital)."),
    expires: datetime = typer.Option(None, help="End of the authorisation (ISO time)."),
    channel: str = typer.Option("admin", help="How the patient gave it: app, kiosk, paper, admin."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record a patient's authorisation for other hospitals to view their exams / 登记患者授权."""
    from radqc.serving.accounts import AccountError, grant_authorisation, person_key_of_exam

    ws = _workspace()
    try:
        with ws.transaction() as s:
            if exam is not None:
                person_key = person_key_of_exam(s, exam)
            elif id_number_env and os.environ.get(id_number_env):
                person_key = ws.vault.pseudonym("id_number", os.environ[id_number_env])
            else:
                _fail("give --exam or --id-number-env / 须指定检查或身份证号")
            row = grant_authorisation(s, person_key, hospital, channel=channel, expires_at=expires)
            out = {"id": row.id, "hospital": hospital, "expires_at": expires, "channel": channel}
    except AccountError as exc:
        _fail(str(exc))
    emit(out, as_json, lambda d: console.print(f"authorisation {d['id']} recorded / 已登记"))


def authorise_revoke(authorisation_id: int = typer.Argument(...)) -> None:
    """Revoke an authorisation / 撤销授权."""
    from radqc.serving.accounts import revoke_authorisation

    _apply(lambda s: revoke_authorisation(s, authorisation_id), f"authorisation {authorisation_id} revoked / 已撤销")


def authorise_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List authorisations / 授权列表."""
    from sqlalchemy import select

    from radqc.catalogue import models as m

    with _workspace().sessions() as s:
        rows = s.execute(select(m.PatientAuthorisation, m.Hospital.code)
                         .outerjoin(m.Hospital, m.Hospital.id == m.PatientAuthorisation.grantee_hospital_id)
                         .order_by(m.PatientAuthorisation.id)).all()
        out = [{"id": a.id, "person_key": a.person_key[:8] + "…", "hospital": code or "*", "channel": a.channel,
                "granted_at": a.granted_at, "expires_at": a.expires_at, "revoked_at": a.revoked_at} for a, code in rows]
    def human(items: list[dict[str, Any]]) -> None:
        for d in items:
            console.print(f"{d['id']:>5} {d['person_key']} → {d['hospital']:<10} {d['channel'] or '-':<6} "
                          f"granted {d['granted_at']:%Y-%m-%d} {'revoked' if d['revoked_at'] else 'active'}")

    emit(out, as_json, human)


ANCHORS_FILE = "audit-anchors.jsonl"


def _read_anchors(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        _fail(f"no anchors file at {path} / 锚点文件不存在")
    anchors = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            anchors.append(json.loads(line))
        except json.JSONDecodeError:
            anchors.append({"line": n})  # reported as unreadable by verify
    return anchors


def audit_verify(as_json: bool = typer.Option(False, "--json"),
                 anchors: Path = typer.Option(None, "--anchors", help="Anchors file written by `radqc audit-log "
                                              "anchor` (kept outside the database): every anchored prefix of the "
                                              "chain must be unchanged.")) -> None:
    """Recompute the SM3 chain of the access log; exit 1 when anything was changed / 校验访问日志."""
    from radqc.serving.accesslog import verify_chain

    ws = _workspace()
    anchor_lines = _read_anchors(anchors) if anchors is not None else None
    with ws.sessions() as s:
        report = verify_chain(s, anchors=anchor_lines, key=ws.master_key).as_dict()

    def human(d: dict[str, Any]) -> None:
        checked = f", {d['anchors_checked']} anchors match" if anchors is not None else ""
        if d["ok"]:
            console.print(f"access log intact / 访问日志完整: {d['entries']} entries, head {d['head']}{checked}")
        else:
            console.print(f"[red]access log TAMPERED / 访问日志被篡改[/]: {d['entries']} entries")
            for p in d["problems"]:
                where = f"entry {p['id']}" if p.get("id") is not None else (f"anchor {p['anchor']}" if p.get("anchor")
                                                                            else "log")
                console.print(f"  {where}: {p['problem']}")

    emit(report, as_json, human)
    if not report["ok"]:
        raise typer.Exit(1)


def audit_anchor(out: Path = typer.Option(None, "--out", help=f"Anchors file to append to (default "
                                          f"<home>/{ANCHORS_FILE}); copy it where the database administrators "
                                          "cannot write."),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Append the chain's current head (entries, head, time, HMAC-SM3) to the anchors file / 锚定日志链尾."""
    from radqc.serving.accesslog import make_anchor

    ws = _workspace()
    path = out or (ws.settings.home / ANCHORS_FILE)
    with ws.sessions() as s:
        anchor = make_anchor(s, ws.master_key)
    if not anchor["chain_ok"]:
        _fail("the access log does not verify; not anchoring a broken chain (run `radqc audit-log verify`) "
              "/ 日志校验失败，未锚定")
    line = {k: anchor[k] for k in ("at", "entries", "head", "mac")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    emit({**line, "file": str(path)}, as_json,
         lambda d: console.print(f"anchored / 已锚定: {d['entries']} entries, head {d['head']} -> {d['file']}"))


def audit_show(limit: int = typer.Option(50), exam: int = typer.Option(None), user: str = typer.Option(None),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """The latest access-log entries / 最近的访问日志."""
    from sqlalchemy import select

    from radqc.catalogue import models as m

    with _workspace().sessions() as s:
        q = select(m.AccessLogEntry).order_by(m.AccessLogEntry.id.desc()).limit(limit)
        if exam is not None:
            q = q.where(m.AccessLogEntry.exam_id == exam)
        if user:
            q = q.where(m.AccessLogEntry.username == user)
        out = [{"id": e.id, "at": e.at, "username": e.username, "role": e.role, "action": e.action,
                "exam_id": e.exam_id, "target": e.target, "client": e.client, "outcome": e.outcome}
               for e in s.scalars(q)]
    def human(items: list[dict[str, Any]]) -> None:
        for d in items:
            console.print(f"{d['at']:%Y-%m-%d %H:%M:%S} {d['username'] or '-':<14} {d['action']:<16} "
                          f"{d['outcome']:<7} exam={d['exam_id'] or '-'} {d['target'] or ''}")

    emit(out, as_json, human)
