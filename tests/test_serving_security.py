"""Security of the service, proved against the real app over a seeded catalogue (issue #8).

* every route in the OpenAPI schema answers 401 without credentials and declares a security
  requirement; the pages outside the schema serve no patient data to a stranger;
* a role matrix: each role of serving/roles.yaml against each operation, 403 exactly when the
  role lacks the permission the route's ``require_<perm>`` dependency names, never 5xx;
* cross-hospital scope: a doctor sees another hospital's exam only while the patient's
  authorisation for the doctor's hospital is active (404 otherwise, on every exam-, series-,
  instance- and DICOMweb route, and absent from every list);
* injection and traversal on search and file endpoints: no 5xx, no extra rows, no file content.

The seed (three exams with real ingested DICOM, a QC result, an image-QC ledger entry with
one evidence PNG, one user per role) is shared with tests/test_serving_fuzz.py and
tests/test_serving_audit_cli.py. Routes land one router at a time: the enumeration tests walk
whatever the app has; the scope and injection probes run for each contract route the app has,
and ``test_contract_routes_exist`` lists the contract routes still missing.
"""

from __future__ import annotations

import io
import re
import urllib.parse
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from radqc.catalogue import models as m
from tests.serving_support import PASSWORD, login

# ----------------------------------------------------------------------------- the seed

#: Patient identifiers written into the seeded DICOM headers: none of them may leave the
#: service to a caller without ``patient.identity`` or without credentials.
PERSON_1 = {"patient_id": "PA-0001", "name": "Zhang^Sanfeng", "id_number": "110101199001011234"}
PERSON_2 = {"patient_id": "PB-0002", "name": "Li^Xiaolong", "id_number": "310101198505055678"}
HOSPITALS = {"H_A": "甲医院 Hospital A", "H_B": "乙医院 Hospital B", "H_C": "丙医院 Hospital C"}

#: One user per role; the roles bound to a hospital get one.
ROLE_USERS = {
    "doctor": ("sec_doctor", "H_A"),
    "qc_expert_l1": ("sec_qc1", None),
    "qc_expert_l2": ("sec_qc2", None),
    "data_engineer": ("sec_data", None),
    "auditor": ("sec_auditor", None),
    "hospital_admin": ("sec_hadmin", "H_A"),
    "patient_portal": ("sec_portal", None),
    "admin": ("sec_admin", None),
}


@dataclass
class SeededExam:
    id: int
    hospital: str
    patient_id: int
    study_uid: str
    accession: str
    series_id: int
    series_uid: str
    instance_ids: list[int]
    sop_uids: list[str]


@dataclass
class Seed:
    """What the seed wrote, by name, so tests fill path parameters with rows that exist."""

    app: FastAPI
    client: TestClient
    #: exam at H_A (person 1), exam at H_B (person 1: the same person), exam at H_B (person 2).
    exam_a: SeededExam
    exam_b: SeededExam
    exam_b2: SeededExam
    person_key: str
    evidence_key: str
    evidence_png: bytes
    authorisation_id: int
    user_ids: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def exams(self) -> list[SeededExam]:
        return [self.exam_a, self.exam_b, self.exam_b2]

    def secrets(self) -> list[str]:
        """Strings that must never appear in an unauthenticated or identity-less response."""
        out: list[str] = []
        for person in (PERSON_1, PERSON_2):
            out += [person["patient_id"], person["name"], person["name"].replace("^", " "), person["id_number"]]
        return out


def _write_series(folder: Path, hospital: str, person: dict[str, str], accession: str, seed: int) -> str:
    """Three 16×16 CT slices with the hospital's institution code; returns the study UID."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    from radqc.dicom.factory import ct_series_datasets

    study_uid = generate_uid()
    datasets = ct_series_datasets(3, size=16, study_uid=study_uid, seed=seed, accession=accession,
                                  patient_id=person["patient_id"], patient_name=person["name"],
                                  institution=HOSPITALS[hospital], study_date="20260301",
                                  StudyDescription=f"胸部CT平扫 chest {accession}", SeriesDescription="chest 5mm",
                                  BodyPartExamined="CHEST", OtherPatientIDs=person["id_number"],
                                  SpecificCharacterSet="ISO_IR 192")
    folder.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(datasets):
        code = Dataset()
        code.CodeValue = hospital
        code.CodingSchemeDesignator = "99RADQC"
        code.CodeMeaning = HOSPITALS[hospital]
        ds.InstitutionCodeSequence = Sequence([code])
        ds.save_as(folder / f"{i}.dcm", enforce_file_format=True)
    return study_uid


def _evidence_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8), color=200).save(buf, format="PNG")
    return buf.getvalue()


def _image_qc_result(exam: SeededExam, evidence_key: str, png: bytes) -> dict[str, Any]:
    """An image_qc ledger result in the documented shape (docs/image-qc.md), one deduction."""
    import hashlib

    evidence = {"series_uid": exam.series_uid, "instance_index": 1, "sop_instance_uid": exam.sop_uids[1],
                "measured": 41.0, "limit": 25.0, "unit": "HU", "box": [2, 2, 10, 10], "image": evidence_key}
    return {
        "schema": "radqc.image_qc/1", "exam_id": exam.id, "score": 80.0, "grade": "1", "image_score": 85.0,
        "image_grade": "1", "standard": "CT.CHEST.PLAIN",
        "dimensions": {"noise": {"value": "偏高", "reason": {"zh": "噪声偏高", "en": "noise high"},
                                 "measured": 41.0, "limit": 25.0}},
        "deductions": [{"check_id": "IQC-NOISE", "dimension": "noise", "value": "偏高", "points": 5,
                        "reason_zh": "噪声偏高", "reason_en": "noise high", "source": "image_qc",
                        "scope": "standard", "evidence": [evidence]}],
        "not_assessed": [], "evidence_images": [evidence_key],
        "evidence_objects": [{"key": evidence_key, "sha256": hashlib.sha256(png).hexdigest(), "size": len(png),
                              "name": "noise.png", "media_type": "image/png"}],
    }


def seed_catalogue(workspace: Any, tmp_path: Path, *, client: TestClient | None = None) -> Seed:
    """Ingest three small exams, attach QC results, create one user per role and log each in."""
    from radqc.pipelines.ingest.folder import ingest_path
    from radqc.serving.accounts import create_api_key, grant_authorisation, revoke_authorisation
    from radqc.serving.app import create_app
    from radqc.serving.security.tokens import issue_token

    src = tmp_path / "seed-dicom"
    uids = {
        "a": _write_series(src / "a", "H_A", PERSON_1, "ACC-A-1", 1),
        "b": _write_series(src / "b", "H_B", PERSON_1, "ACC-B-1", 2),
        "b2": _write_series(src / "b2", "H_B", PERSON_2, "ACC-B-2", 3),
    }
    summary = ingest_path(workspace, src, workers=1)
    assert summary.ingested == 9, summary
    png = _evidence_png()
    evidence_key = workspace.store.put(png).key
    exams: dict[str, SeededExam] = {}
    with workspace.transaction() as s:
        for hospital, name in HOSPITALS.items():
            if s.scalar(select(m.Hospital).where(m.Hospital.code == hospital)) is None:
                s.add(m.Hospital(code=hospital, name=name))
        s.flush()
        for label, uid in uids.items():
            exam = s.scalar(select(m.Exam).where(m.Exam.study_instance_uid == uid))
            assert exam is not None and exam.patient_id is not None
            series = s.scalars(select(m.Series).where(m.Series.exam_id == exam.id)).one()
            instances = s.scalars(select(m.Instance).where(m.Instance.series_id == series.id)
                                  .order_by(m.Instance.instance_number)).all()
            hospital = s.get(m.Hospital, exam.hospital_id)
            assert hospital is not None
            exams[label] = SeededExam(exam.id, hospital.code, exam.patient_id, uid, exam.accession_number or "",
                                      series.id, series.series_instance_uid, [i.id for i in instances],
                                      [i.sop_instance_uid for i in instances])
            exam.ordered_items = ["胸部CT平扫"]
            s.add(m.ExamRecord(record_key=f"rk-{label}", hospital_code=hospital.code, accession_number=exam.accession_number,
                               patient_id=exam.patient_id, exam_id=exam.id, modality="CT",
                               exam_items=[{"code": "CT.CHEST.PLAIN", "name": "胸部CT平扫"}],
                               findings="双肺纹理清晰。", impression="胸部CT平扫未见明显异常。",
                               report_time=datetime.now(UTC) - timedelta(days=1), report_doctor="王医生"))
        for label, exam_row in exams.items():
            result = _image_qc_result(exam_row, evidence_key, png)
            ledger = m.LedgerEntry(exam_id=exam_row.id, stage="image_qc", version="test", status="succeeded",
                                   finished_at=datetime.now(UTC), result=result)
            s.add(ledger)
            s.flush()
            s.add(m.QcResult(exam_id=exam_row.id, ledger_id=ledger.id, standard="CT.CHEST.PLAIN", modality="CT",
                             score=80.0 if label != "b2" else 55.0, grade="1" if label != "b2" else "3",
                             image_score=85.0, image_grade="1", rule_score=95.0,
                             dimension_values={"noise": "偏高"}, deduction_count=1, evidence_count=1))
        person_key = s.scalar(select(m.Patient.person_key).where(m.Patient.id == exams["a"].patient_id))
        assert person_key and person_key == s.scalar(select(m.Patient.person_key)
                                                     .where(m.Patient.id == exams["b"].patient_id))
        # A revoked authorisation row, so DELETE /api/authorisations/{id} has a row to find.
        authorisation_id = grant_authorisation(s, person_key, "H_C", channel="app").id
        revoke_authorisation(s, authorisation_id)
    _add_role_users(workspace)
    # 500s come back as responses (not raised), so a failing probe names its route and request.
    client = client or TestClient(create_app(workspace), raise_server_exceptions=False)
    seed = Seed(app=client.app, client=client, exam_a=exams["a"], exam_b=exams["b"], exam_b2=exams["b2"],  # type: ignore[arg-type]
                person_key=person_key, evidence_key=evidence_key, evidence_png=png,
                authorisation_id=authorisation_id)
    with workspace.sessions() as s:
        seed.user_ids = {str(role): int(uid) for role, uid in s.execute(
            select(m.AppUser.role, m.AppUser.id).where(m.AppUser.username.like("sec_%")))}
    # One real login (the flow is tests/test_serving_auth.py's subject); the other roles get tokens
    # issued with the app's own key and claims, as the login route issues them (Argon2id costs
    # ~0.5 s a verification on two cores, and this seed runs once per test and backend).
    seed.headers["admin"] = login(client, ROLE_USERS["admin"][0], PASSWORD)
    settings = client.app.state.ctx.settings  # type: ignore[attr-defined]
    with workspace.sessions() as s:
        for user in s.scalars(select(m.AppUser).where(m.AppUser.username.like("sec_%"))):
            if user.role != "admin":
                token, _ = issue_token(settings.signing_key, user_id=user.id, role=user.role,
                                       hospital_id=user.hospital_id, token_version=user.token_version,
                                       minutes=settings.token_minutes)
                seed.headers[user.role] = {"Authorization": f"Bearer {token}"}
    # The portal is a system: it signs in with an API key, as deployed.
    with workspace.transaction() as s:
        _, full = create_api_key(s, "sec_portal", "云胶片 app", client.app.state.ctx.settings.api_key_secret)  # type: ignore[attr-defined]
    seed.headers["patient_portal_key"] = {"X-API-Key": full}
    return seed


_PASSWORD_HASH: list[str] = []


def _add_role_users(workspace: Any) -> None:
    """One user per role (ROLE_USERS), all with PASSWORD, hashed once per test session."""
    from radqc.serving.accounts import create_user, hospital_by_code
    from radqc.serving.security.passwords import hash_password

    if not _PASSWORD_HASH:
        _PASSWORD_HASH.append(hash_password(PASSWORD))
    with workspace.transaction() as s:
        for role, (username, hospital) in ROLE_USERS.items():
            if hospital:
                hospital_by_code(s, hospital, create=True)
            user = create_user(s, username, role, hospital_code=hospital, display_name=username.title())
            user.password_hash = _PASSWORD_HASH[0]


@pytest.fixture
def seed(workspace, tmp_path) -> Seed:  # type: ignore[no-untyped-def]
    return seed_catalogue(workspace, tmp_path)


# ----------------------------------------------------------------------------- routes

METHODS = ("get", "post", "put", "patch", "delete")
LOGIN = ("post", "/api/auth/token")


def schema_operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, operation) for every operation in the OpenAPI schema."""
    ops = []
    for path, item in app.openapi()["paths"].items():
        for method in METHODS:
            if method in item:
                ops.append((method, path, item[method]))
    return ops


def flat_routes(app: FastAPI) -> list[Any]:
    """Every route of the app with its full path and dependencies.

    FastAPI 0.165 keeps included routers nested (``_IncludedRouter``); their effective routes,
    with the prefix and the router's dependencies applied, come from its route iterator.
    """
    from fastapi import routing

    flatten = getattr(routing, "_iter_included_route_candidates", None)
    return list(flatten(app.routes)) if flatten else list(app.routes)


def api_route(app: FastAPI, method: str, template: str) -> APIRoute | None:
    for route in flat_routes(app):
        if isinstance(route, APIRoute) and route.path == template and method.upper() in (route.methods or ()):
            return route
    return None


def has_route(app: FastAPI, method: str, template: str) -> bool:
    return api_route(app, method, template) is not None


def _walk(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep
        yield from _walk(dep)


def required_permissions(route: APIRoute) -> set[str]:
    """Permissions named by the route's ``require(...)`` dependencies (``require_exam_read`` ...)."""
    from radqc.serving.security.roles import load_roles

    by_name = {f"require_{p.replace('.', '_')}": p for p in load_roles().permissions}
    found = set()
    for dep in _walk(route.dependant):
        name = getattr(dep.call, "__name__", "")
        if name.startswith("require_"):
            assert name in by_name, f"{route.path}: dependency {name} names no permission of roles.yaml"
            found.add(by_name[name])
    return found


def authenticates(route: APIRoute) -> bool:
    from radqc.serving.security.deps import authenticate

    return any(dep.call is authenticate for dep in _walk(route.dependant))


def fill_path(template: str, seed: Seed, exam: SeededExam) -> str:
    """The template with every ``{param}`` replaced by an existing row's id or UID of ``exam``."""
    values: dict[str, Any] = {
        "exam_id": exam.id, "patient_id": exam.patient_id, "series_id": exam.series_id,
        "instance_id": exam.instance_ids[0], "study": exam.study_uid, "study_uid": exam.study_uid,
        "study_instance_uid": exam.study_uid, "series": exam.series_uid, "series_uid": exam.series_uid,
        "series_instance_uid": exam.series_uid, "instance": exam.sop_uids[0], "sop": exam.sop_uids[0],
        "sop_uid": exam.sop_uids[0], "sop_instance_uid": exam.sop_uids[0], "instance_uid": exam.sop_uids[0],
        "authorisation_id": seed.authorisation_id, "user_id": seed.user_ids.get("doctor", 1),
        "username": ROLE_USERS["doctor"][0],
    }

    def one(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        if name in values:
            return str(values[name])
        if name in ("n", "index", "frame", "frames", "frame_number", "frame_numbers"):
            return "0" if "evidence" in template else "1"
        if name in ("id", "key_id"):
            return str(seed.authorisation_id if "authorisation" in template else seed.user_ids.get("doctor", 1))
        if name == "path" or name.endswith("_path"):
            return "index.html"
        return "1"

    return re.sub(r"\{([^}]+)\}", one, template)


#: Request bodies that pass validation, so an allowed role reaches the handler (not a 422).
def plausible_body(method: str, template: str, seed: Seed) -> Any:
    if template == "/api/exams/{exam_id}/recognition" and method == "post":
        return {"decision": "不互认", "reason_code": _a_reason_code(), "comment": "安全测试 / security test"}
    if template == "/api/admin/users" and method == "post":
        return {"username": "made_by_matrix", "role": "data_engineer", "password": PASSWORD + "x"}
    if template == "/api/authorisations" and method == "post":
        return {"exam_id": seed.exam_b.id, "hospital": "H_C",
                "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    return None


def _a_reason_code() -> str:
    import yaml

    from radqc.serving.settings import ServingSettings

    raw = yaml.safe_load(ServingSettings.__dataclass_fields__["recognition_reasons"].default.read_text("utf-8"))
    reasons = raw.get("reasons", raw) if isinstance(raw, dict) else raw
    if isinstance(reasons, dict):
        return str(next(iter(reasons)))
    return str(reasons[0]["code"])


def call(client: TestClient, method: str, url: str, headers: dict[str, str] | None = None, body: Any = None) -> Any:
    if method == "post" and url == LOGIN[1]:
        return client.post(url, data=body or {}, headers=headers or {})
    if body is None:
        return client.request(method.upper(), url, headers=headers or {})
    return client.request(method.upper(), url, headers=headers or {}, json=body)


# ----------------------------------------------------------------------------- 1. enumeration


def test_every_schema_route_rejects_unauthenticated_requests(seed: Seed) -> None:
    ops = schema_operations(seed.app)
    assert (LOGIN[0], LOGIN[1]) in {(mt, p) for mt, p, _ in ops}
    checked = 0
    bad_credentials = [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic c2VjX2FkbWluOmNvcnJlY3Q="},
        {"X-API-Key": "rq_0000_nope"},
        {"X-API-Key": "not-even-the-format"},
    ]
    for method, template, _ in ops:
        if (method, template) == LOGIN:
            continue
        for exam in (seed.exam_a, seed.exam_b):
            url = fill_path(template, seed, exam)
            for headers in bad_credentials:
                r = call(seed.client, method, url, headers, plausible_body(method, template, seed))
                assert r.status_code == 401, f"{method.upper()} {url} with {headers or 'no credentials'}: " \
                                             f"{r.status_code} {r.text[:200]}"
                assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
                assert not any(secret in r.text for secret in seed.secrets())
                checked += 1
    # A valid token is only taken from the header: never from the URL (logs, Referer, history)
    # nor from a cookie (no CSRF surface); no CORS grant to another origin.
    token = seed.headers["admin"]["Authorization"].split()[1]
    for method, template, _ in ops:
        if (method, template) == LOGIN:
            continue
        url = fill_path(template, seed, seed.exam_a)
        for params, cookie in (({"access_token": token}, {}), ({"token": token}, {}), ({"api_key": token}, {}),
                               ({}, {"Cookie": f"access_token={token}; token={token}"})):
            r = seed.client.request(method.upper(), url, params=params, headers=cookie)
            assert r.status_code == 401, f"{method.upper()} {url} accepted a token from {params or 'a cookie'}"
        r = seed.client.request("OPTIONS", url, headers={"Origin": "https://evil.example",
                                                         "Access-Control-Request-Method": method.upper()})
        assert "access-control-allow-origin" not in r.headers, f"CORS grant on {url}"
    r = seed.client.get("/api/auth/me")
    for header, value in (("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"),
                          ("cache-control", "no-store")):
        assert r.headers.get(header) == value, (header, r.headers.get(header))
    assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", "")
    # The login endpoint itself: no or wrong credentials never yield a token.
    for form in ({}, {"username": "sec_admin"}, {"username": "sec_admin", "password": "wrong-password-x"},
                 {"username": "' OR 1=1 --", "password": "' OR 1=1 --"}):
        r = seed.client.post(LOGIN[1], data=form)
        assert r.status_code in (401, 422) and "access_token" not in r.text, (form, r.status_code, r.text)
    assert checked >= 5 * 2 * (len(ops) - 1)


def test_every_schema_operation_declares_a_security_requirement(seed: Seed) -> None:
    schema = seed.app.openapi()
    schemes = schema.get("components", {}).get("securitySchemes", {})
    oauth = {n for n, s in schemes.items() if s.get("type") == "oauth2"}
    api_key = {n for n, s in schemes.items() if s.get("type") == "apiKey" and s.get("name") == "X-API-Key"}
    assert oauth and api_key, schemes
    for method, template, op in schema_operations(seed.app):
        if (method, template) == LOGIN:
            assert not op.get("security"), "the login endpoint must be reachable without a token"
            continue
        declared = {name for requirement in op.get("security", []) for name in requirement}
        assert declared & oauth and declared & api_key, f"{method.upper()} {template} declares {declared}"
        route = api_route(seed.app, method, template)
        assert route is not None and authenticates(route), f"{method.upper()} {template} has no authenticate dependency"


def test_pages_outside_the_schema_serve_no_patient_data(seed: Seed) -> None:
    """Web pages, static files and the schema's own pages: nothing about a patient without a token."""
    from starlette.routing import Mount

    schema_paths = {p for _, p, _ in schema_operations(seed.app)}
    urls = ["/", "/openapi.json", "/docs", "/app", f"/app/exams/{seed.exam_b.id}",
            f"/app/patients/{seed.exam_b.patient_id}"]
    for route in flat_routes(seed.app):
        path = getattr(route, "path", None)
        if not path or path in schema_paths:
            continue
        if isinstance(route, Mount):
            urls += [path.rstrip("/") + "/", path.rstrip("/") + "/index.html", path.rstrip("/") + "/app.js"]
        else:
            urls.append(fill_path(path, seed, seed.exam_b))
    exam_facts = [e.accession for e in seed.exams] + [e.study_uid for e in seed.exams] + [e.series_uid for e in seed.exams]
    for url in dict.fromkeys(urls):
        r = seed.client.get(url)
        assert r.status_code < 500, (url, r.status_code)
        for secret in seed.secrets() + exam_facts:
            assert secret not in r.text, f"GET {url} unauthenticated shows {secret!r}"
        assert seed.evidence_png not in r.content


# ----------------------------------------------------------------------------- 2. role matrix

#: Permissions whose routes may answer 403 to a role holding them, for a policy reason (可见不可存:
#: original DICOM of another hospital's exam while settings.allow_original_download is off; region
#: roles count as another hospital for every exam).
POLICY_403 = {"image.download_original"}


def test_role_matrix_403_exactly_when_the_permission_is_missing(seed: Seed, workspace: Any) -> None:
    from radqc.serving.security.roles import load_roles

    book = load_roles()
    assert set(ROLE_USERS) == set(book.roles), "a role was added to roles.yaml: give it a user here"
    denied_before = _count_denied(workspace)
    denials = 0
    rows = []
    for method, template, _ in schema_operations(seed.app):
        if (method, template) == LOGIN:
            continue
        route = api_route(seed.app, method, template)
        assert route is not None
        needed = required_permissions(route)
        for role_name, role in book.roles.items():
            headers = seed.headers[role_name]
            exam = seed.exam_a  # own hospital for the hospital roles: scope does not mask the answer
            url = fill_path(template, seed, exam)
            r = call(seed.client, method, url, headers, plausible_body(method, template, seed))
            allowed = needed <= role.permissions
            rows.append((role_name, method.upper(), url, r.status_code))
            assert r.status_code < 500, f"{role_name} {method.upper()} {url}: {r.status_code} {r.text[:300]}"
            permission_denial = r.status_code == 403 and "permission" in r.json().get("detail", "")
            if allowed:
                assert not permission_denial, f"{role_name} holds {needed} but {method.upper()} {url} said {r.text}"
                if r.status_code == 403:
                    assert needed & POLICY_403, f"{role_name} {method.upper()} {url}: {r.text}"
            else:
                assert r.status_code == 403 and permission_denial, \
                    f"{role_name} lacks {needed - role.permissions} but {method.upper()} {url} -> {r.status_code}"
                denials += 1
    # The portal's API key gets the same answers as its token.
    for method, template, _ in schema_operations(seed.app):
        route = api_route(seed.app, method, template)
        if (method, template) == LOGIN or route is None or not required_permissions(route):
            continue
        url = fill_path(template, seed, seed.exam_a)
        r = call(seed.client, method, url, seed.headers["patient_portal_key"], plausible_body(method, template, seed))
        expected_denied = not required_permissions(route) <= book.role("patient_portal").permissions
        assert (r.status_code == 403) == expected_denied and r.status_code < 500, (method, url, r.status_code)
        denials += expected_denied
    assert denials > 0 or len(rows) <= 2 * len(book.roles)
    assert _count_denied(workspace) - denied_before == denials, "every 403 leaves an access-log entry"


def _count_denied(workspace: Any) -> int:
    with workspace.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(m.AccessLogEntry)
                            .where(m.AccessLogEntry.action == "denied")) or 0)


# ----------------------------------------------------------------------------- 3. cross-hospital


def _exam_probes(seed: Seed, exam: SeededExam) -> list[tuple[str, str, Any]]:
    """(method, url, body) of every contract route that reads one exam, for the routes the app has."""
    t = [
        ("get", "/api/exams/{exam_id}", None),
        ("get", "/api/exams/{exam_id}/evidence/{n}", None),
        ("get", "/api/exams/{exam_id}/recognition", None),
        ("get", "/api/series/{series_id}/thumbnail", None),
        ("get", "/api/series/{series_id}/stack", None),
        ("get", "/api/instances/{instance_id}/rendered", None),
        ("get", "/dicomweb/studies/{study}/metadata", None),
        ("get", "/dicomweb/studies/{study}/series", None),
        ("get", "/dicomweb/studies/{study}/series/{series}/metadata", None),
        ("get", "/dicomweb/studies/{study}/series/{series}/instances", None),
        ("get", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata", None),
        ("get", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered", None),
        ("get", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", None),
        ("get", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered", None),
    ]
    out = []
    for method, template, body in t:
        route = _route_like(seed.app, method, template)
        if route is not None:
            out.append((method, fill_path(route.path, seed, exam), body))
    return out


def _fill_all(template: str, value: str) -> str:
    """Every ``{param}`` of ``template`` replaced by ``value`` verbatim (backslashes included)."""
    return re.sub(r"\{[^}]+\}", lambda _match: value, template)


def _shape(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", template)


def _route_like(app: FastAPI, method: str, template: str) -> APIRoute | None:
    """The app's route whose path equals ``template`` up to the names of its parameters."""
    shape = re.sub(r"\{[^}]+\}", "{}", template)
    for route in flat_routes(app):
        if isinstance(route, APIRoute) and method.upper() in (route.methods or ()) \
                and re.sub(r"\{[^}]+\}", "{}", route.path) == shape:
            return route
    return None


def _listed_exam_ids(seed: Seed, headers: dict[str, str]) -> set[int] | None:
    if not has_route(seed.app, "get", "/api/exams"):
        return None
    r = seed.client.get("/api/exams", params={"limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return {item["id"] for item in r.json()["items"]}


def _listed_studies(seed: Seed, headers: dict[str, str]) -> set[str] | None:
    if _route_like(seed.app, "get", "/dicomweb/studies") is None:
        return None
    r = seed.client.get("/dicomweb/studies", headers=headers)
    assert r.status_code in (200, 204), r.text
    if r.status_code == 204 or not r.content:
        return set()
    return {item.get("0020000D", {}).get("Value", [None])[0] for item in r.json()}


def _patient_history_ids(seed: Seed, headers: dict[str, str], patient_id: int) -> set[int] | None:
    route = _route_like(seed.app, "get", "/api/patients/{patient_id}/exams")
    if route is None:
        return None
    r = seed.client.get(fill_path(route.path, seed, seed.exam_a).replace(str(seed.exam_a.patient_id), str(patient_id)),
                        headers=headers)
    if r.status_code == 404:
        return set()
    assert r.status_code == 200, r.text
    return {item["id"] for item in r.json()["items"]}


def _visible(seed: Seed, headers: dict[str, str], exam: SeededExam) -> dict[str, bool]:
    """Per probe: whether ``exam`` is visible to the caller (200 / listed) or hidden (404 / absent)."""
    seen: dict[str, bool] = {}
    for method, url, body in _exam_probes(seed, exam):
        r = call(seed.client, method, url, headers, body)
        assert r.status_code in (200, 404), f"{method.upper()} {url}: {r.status_code} {r.text[:200]}"
        if r.status_code == 404:
            assert not any(s in r.text for s in seed.secrets()) and exam.accession not in r.text
        seen[url] = r.status_code == 200
    listed = _listed_exam_ids(seed, headers)
    if listed is not None:
        seen["/api/exams"] = exam.id in listed
    studies = _listed_studies(seed, headers)
    if studies is not None:
        seen["/dicomweb/studies"] = exam.study_uid in studies
    history = _patient_history_ids(seed, headers, seed.exam_a.patient_id)
    if history is not None:
        seen["/api/patients/{own patient}/exams"] = exam.id in history
    if exam.hospital != "H_A" and has_route(seed.app, "get", "/api/patients/{patient_id}/repeat-check"):
        r = seed.client.get(f"/api/patients/{seed.exam_a.patient_id}/repeat-check", headers=headers,
                            params={"item": "CT.CHEST.PLAIN", "window_days": 3650})
        if r.status_code != 404:  # a hospital admin's own patient; 404 when the role sees no such patient
            assert r.status_code == 200, r.text
            seen["/api/patients/{own patient}/repeat-check"] = exam.id in {i["id"] for i in r.json()["items"]}
    return seen


def _grant(workspace: Any, person_key: str, hospital: str | None, expires_at: datetime | None = None) -> int:
    from radqc.serving.accounts import grant_authorisation

    with workspace.transaction() as s:
        return grant_authorisation(s, person_key, hospital, channel="app", expires_at=expires_at).id


def _revoke(workspace: Any, authorisation_id: int) -> None:
    from radqc.serving.accounts import revoke_authorisation

    with workspace.transaction() as s:
        revoke_authorisation(s, authorisation_id)


def test_cross_hospital_exam_only_with_an_active_authorisation(seed: Seed, workspace: Any) -> None:
    doctor = seed.headers["doctor"]
    own = _visible(seed, doctor, seed.exam_a)
    assert own and all(own.values()), f"the doctor's own exam must be visible everywhere: {own}"

    def hidden() -> None:
        seen = _visible(seed, doctor, seed.exam_b)
        assert seen and not any(seen.values()), f"H_B exam leaks to the H_A doctor: {seen}"

    hidden()
    # an authorisation for another hospital, and an expired one, open nothing
    _grant(workspace, seed.person_key, "H_C")
    _grant(workspace, seed.person_key, "H_A", expires_at=datetime.now(UTC) - timedelta(minutes=1))
    hidden()
    grant = _grant(workspace, seed.person_key, "H_A", expires_at=datetime.now(UTC) + timedelta(days=7))
    seen = _visible(seed, doctor, seed.exam_b)
    assert all(seen.values()), f"authorised exam must be visible: {seen}"
    # the same patient's authorisation does not open another patient's exam at that hospital
    stranger = _visible(seed, doctor, seed.exam_b2)
    assert not any(stranger.values()), stranger
    # a hospital admin of H_A never sees H_B's exams, authorised or not
    assert not any(_visible(seed, seed.headers["hospital_admin"], seed.exam_b).values())
    _revoke(workspace, grant)
    hidden()
    # an authorisation for every hospital (grantee NULL) opens it; revoked, it closes again
    everyone = _grant(workspace, seed.person_key, None)
    assert all(_visible(seed, doctor, seed.exam_b).values())
    _revoke(workspace, everyone)
    hidden()


def test_recognition_needs_scope_and_lands_in_the_log(seed: Seed, workspace: Any) -> None:
    if not has_route(seed.app, "post", "/api/exams/{exam_id}/recognition"):
        pytest.skip("recognition router not on main yet")
    doctor = seed.headers["doctor"]
    body = {"decision": "不互认", "reason_code": _a_reason_code(), "comment": "测试"}
    url = f"/api/exams/{seed.exam_b.id}/recognition"
    assert seed.client.post(url, json=body, headers=doctor).status_code == 404
    grant = _grant(workspace, seed.person_key, "H_A")
    r = seed.client.post(url, json=body, headers=doctor)
    assert r.status_code == 201, r.text
    assert r.json()["exam_id"] == seed.exam_b.id and r.json()["decision"] == "不互认"
    _revoke(workspace, grant)
    assert seed.client.post(url, json=body, headers=doctor).status_code == 404
    assert seed.client.get(url, headers=doctor).status_code == 404
    with workspace.sessions() as s:
        actions = s.execute(select(m.AccessLogEntry.action, m.AccessLogEntry.exam_id, m.AccessLogEntry.username)
                            .where(m.AccessLogEntry.action == "recognition.record")).all()
    assert [(a, e, u) for a, e, u in actions] == [("recognition.record", seed.exam_b.id, "sec_doctor")]


# ----------------------------------------------------------------------------- identity


def test_patient_identity_only_for_roles_holding_patient_identity(seed: Seed, workspace: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """No GET of any operation shows a name, patient ID or ID number to a role without
    ``patient.identity`` — JSON, DICOM JSON, stacks, CSV; a doctor (who holds it) does see the name."""
    from radqc.serving.security.roles import load_roles

    book = load_roles()
    _grant(workspace, seed.person_key, None)  # every hospital: scope does not hide what is checked
    checked = 0
    for role_name, role in book.roles.items():
        if "patient.identity" in role.permissions:
            continue
        for method, template, _ in schema_operations(seed.app):
            if method != "get":
                continue
            for exam in (seed.exam_a, seed.exam_b):
                for params in ({}, {"format": "csv"}) if "/stats/" in template else ({},):
                    r = seed.client.get(fill_path(template, seed, exam), params=params, headers=seed.headers[role_name])
                    leaked = [v for v in seed.secrets() if v.encode() in r.content]
                    assert not leaked, f"{role_name} GET {fill_path(template, seed, exam)} shows {leaked}"
                    checked += r.status_code == 200
    assert checked > 0
    if has_route(seed.app, "get", "/api/exams/{exam_id}"):
        r = seed.client.get(f"/api/exams/{seed.exam_a.id}", headers=seed.headers["doctor"])
        assert r.status_code == 200 and PERSON_1["name"] in r.text, "positive control: the doctor sees the name"
    # 可见不可存 switched off for the region: a QC expert downloads the original, pseudonymised
    route = _route_like(seed.app, "get", "/dicomweb/studies/{study}/series/{series}/instances/{instance}")
    if route is not None:
        from radqc.serving.app import create_app

        url = fill_path(route.path, seed, seed.exam_b)
        assert seed.client.get(url, headers=seed.headers["qc_expert_l1"]).status_code == 403
        monkeypatch.setenv("RADQC_ALLOW_ORIGINAL_DOWNLOAD", "true")
        open_client = TestClient(create_app(workspace), raise_server_exceptions=False)
        r = open_client.get(url, headers=seed.headers["qc_expert_l1"])
        assert r.status_code == 200 and r.content[128:132] == b"DICM", r.status_code
        leaked = [v for v in seed.secrets() if v.encode() in r.content]
        assert not leaked, f"original download for a role without patient.identity carries {leaked}"
        assert open_client.get(url, headers=seed.headers["doctor"]).status_code == 403, "doctors never download"


# ----------------------------------------------------------------------------- 4. injection, traversal

SQL_INJECTIONS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "\" OR \"\"=\"",
    "1; DROP TABLE exam; --",
    "'; DELETE FROM access_log; --",
    "ACC-A-1' UNION SELECT id, study_instance_uid FROM exam --",
    "') OR ('x'='x",
    "%' OR '%'='",
    "%",
    "_",
    "\\",
    "胸部' OR 1=1 --",
]


def _exam_count(workspace: Any) -> tuple[int, int]:
    with workspace.sessions() as s:
        return (int(s.scalar(select(func.count()).select_from(m.Exam)) or 0),
                int(s.scalar(select(func.count()).select_from(m.AccessLogEntry)) or 0))


def test_sql_injection_in_every_search_parameter(seed: Seed, workspace: Any) -> None:
    admin = seed.headers["admin"]
    probes = 0
    if has_route(seed.app, "get", "/api/exams"):
        everything = seed.client.get("/api/exams", headers=admin).json()["total"]
        assert everything == 3
        for param in ("q", "hospital", "item", "modality", "patient_id", "grade", "date_from", "date_to"):
            for payload in SQL_INJECTIONS:
                r = seed.client.get("/api/exams", params={param: payload}, headers=admin)
                assert r.status_code < 500, (param, payload, r.status_code, r.text[:300])
                if r.status_code == 200:
                    assert r.json()["total"] == 0 and r.json()["items"] == [], (param, payload, r.json()["total"])
                else:
                    assert r.status_code in (400, 404, 422), (param, payload, r.status_code)
                probes += 1
        # a legitimate search still finds exactly its row (the injection rows above found nothing)
        r = seed.client.get("/api/exams", params={"q": seed.exam_a.accession}, headers=admin)
        assert [i["id"] for i in r.json()["items"]] == [seed.exam_a.id]
    if _route_like(seed.app, "get", "/dicomweb/studies") is not None:
        for param in ("StudyInstanceUID", "AccessionNumber", "ModalitiesInStudy", "StudyDate"):
            # (a backslash is DICOM's value separator: a list of empty values must match nothing)
            for payload in SQL_INJECTIONS:
                r = seed.client.get("/dicomweb/studies", params={param: payload}, headers=admin)
                assert r.status_code < 500, (param, payload, r.status_code, r.text[:300])
                if r.status_code == 200 and r.content:
                    assert r.json() == [], (param, payload, r.text[:200])
                probes += 1
    for method, url, _ in _exam_probes(seed, seed.exam_a):
        for payload in SQL_INJECTIONS[:7]:
            bad = url.replace(seed.exam_a.study_uid, urllib.parse.quote(payload, safe=""))
            quoted = urllib.parse.quote(payload, safe="")
            bad = re.sub(r"/(exams|series|instances)/\d+", lambda mt: f"/{mt.group(1)}/{quoted}", bad)  # noqa: B023
            r = call(seed.client, method, bad, admin)
            assert r.status_code in (400, 404, 422), (bad, r.status_code, r.text[:200])
            probes += 1
    if has_route(seed.app, "get", "/api/patients/{patient_id}/repeat-check"):
        for payload in SQL_INJECTIONS:
            r = seed.client.get(f"/api/patients/{seed.exam_a.patient_id}/repeat-check", params={"item": payload},
                                headers=seed.headers["doctor"])
            assert r.status_code in (404, 422), (payload, r.status_code)
    exams, _ = _exam_count(workspace)
    assert exams == 3, "an injected statement changed the catalogue"
    with workspace.sessions() as s:
        from radqc.serving.accesslog import verify_chain

        assert verify_chain(s).ok
    if not probes:
        pytest.skip("no search route on main yet")


TRAVERSALS = [
    "../../../../etc/passwd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "..\\..\\..\\etc\\passwd",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "0%00",
    "0%00.png",
    "-1",
    "99999",
    "1e3",
    "0x0",
]


def _assert_no_file_content(r: Any, seed: Seed, what: str) -> None:
    assert b"root:x:0:0" not in r.content and b"SQLite format 3" not in r.content, what
    assert b"RADQC_SECRET_KEY" not in r.content and b"[project]" not in r.content, what


def test_path_traversal_on_file_endpoints(seed: Seed) -> None:
    admin = seed.headers["admin"]
    probes = 0
    evidence = _route_like(seed.app, "get", "/api/exams/{exam_id}/evidence/{n}")
    if evidence is not None:
        base = f"/api/exams/{seed.exam_a.id}/evidence/"
        good = seed.client.get(base + "0", headers=admin)
        assert good.status_code == 200 and good.headers["content-type"].startswith("image/png"), good.text
        for payload in TRAVERSALS:
            r = seed.client.get(base + payload, headers=admin)
            assert 400 <= r.status_code < 500, (payload, r.status_code)
            _assert_no_file_content(r, seed, payload)
            probes += 1
        # the object key itself is never accepted where an index is expected
        r = seed.client.get(base + urllib.parse.quote(seed.evidence_key, safe=""), headers=admin)
        assert 400 <= r.status_code < 500 and r.content != seed.evidence_png
    for template in ("/api/series/{series_id}/thumbnail", "/api/series/{series_id}/stack",
                     "/api/instances/{instance_id}/rendered"):
        route = _route_like(seed.app, "get", template)
        if route is None:
            continue
        for payload in TRAVERSALS:
            url = _fill_all(route.path, payload)
            r = seed.client.get(url, headers=admin)
            assert 400 <= r.status_code < 500, (url, r.status_code)
            _assert_no_file_content(r, seed, url)
            probes += 1
    for method, url, _ in _exam_probes(seed, seed.exam_a):
        if not url.startswith("/dicomweb/"):
            continue
        for payload in TRAVERSALS[:8]:
            bad = url.replace(seed.exam_a.study_uid, payload)
            r = call(seed.client, method, bad, admin)
            assert 400 <= r.status_code < 500, (bad, r.status_code)
            _assert_no_file_content(r, seed, bad)
            probes += 1
    # static files and pages (H3's mount): traversal out of the web folder never reads a file
    from starlette.routing import Mount

    for route in flat_routes(seed.app):
        if isinstance(route, Mount):
            for payload in TRAVERSALS[:7] + ["..%2f..%2f..%2fpyproject.toml", "../../../../pyproject.toml"]:
                r = seed.client.get(route.path.rstrip("/") + "/" + payload)
                assert r.status_code != 200 or b"[project]" not in r.content
                _assert_no_file_content(r, seed, route.path + payload)
                probes += 1
    for payload in ("../../../../etc/passwd", "..%2f..%2fpyproject.toml", "app/..%2f..%2f..%2fpyproject.toml"):
        r = seed.client.get("/" + payload)
        _assert_no_file_content(r, seed, payload)
    if not probes:
        pytest.skip("no file endpoint on main yet")


def raw_get(app: FastAPI, raw_path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``raw_path`` exactly as a client sent it on the wire (HTTP clients, the test client
    included, remove ``../`` before sending; an attacker's client does not). The scope is built
    as uvicorn builds it: ``path`` is the percent-decoded ``raw_path``."""
    import anyio

    async def run() -> tuple[int, bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": urllib.parse.unquote(raw_path), "raw_path": raw_path.encode("latin-1"),
                 "query_string": b"", "root_path": "", "client": ("127.0.0.1", 40000), "server": ("testserver", 80),
                 "headers": [(b"host", b"testserver")] + [(k.lower().encode(), v.encode())
                                                          for k, v in (headers or {}).items()]}
        status_code, body = 0, b""
        requested = done = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            while not done:  # the client stays connected until the response is complete
                await anyio.sleep(0.001)
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status_code, body, done
            if message["type"] == "http.response.start":
                status_code = message["status"]
            elif message["type"] == "http.response.body":
                body += message.get("body", b"")
                done = not message.get("more_body", False)

        try:
            await app(scope, receive, send)
        except Exception:
            status_code = status_code or 500
        return status_code, body

    # A thread of its own: the browser tests' Playwright (sync API) keeps an event loop running
    # in the main thread for the whole session, and anyio.run refuses to nest in it.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, run).result()


def test_path_traversal_on_the_wire(seed: Seed) -> None:
    """Unnormalised ``../`` and encoded variants straight into the ASGI app: never a file."""
    admin = seed.headers["admin"]
    prefixes = ["/static/", "/app/", "/", f"/api/exams/{seed.exam_a.id}/evidence/", "/api/series/",
                f"/dicomweb/studies/{seed.exam_a.study_uid}/series/"]
    targets = ["../../../../../../etc/passwd", "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
               "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "../../pyproject.toml", "../../../pyproject.toml",
               "..%2f..%2fpyproject.toml", "../roles.yaml", "../../serving/roles.yaml", "%2e%2e%2f%2e%2e%2fpyproject.toml",
               "..%5c..%5cpyproject.toml", "%00../../pyproject.toml"]
    probes = 0
    for prefix in prefixes:
        for target in targets:
            for headers in ({}, admin):
                status_code, body = raw_get(seed.app, prefix + target, headers)
                what = f"GET {prefix + target} ({'admin' if headers else 'anonymous'}) -> {status_code}"
                assert status_code < 500, what
                assert b"root:x:0:0" not in body and b"[project]" not in body and b"permissions:" not in body, what
                probes += 1
    # the wire helper does reach the app: a plain request answers as through the client
    assert raw_get(seed.app, "/api/auth/me", admin)[0] == 200
    assert raw_get(seed.app, "/api/auth/me")[0] == 401
    if has_route(seed.app, "get", "/api/exams/{exam_id}/evidence/{n}"):
        assert raw_get(seed.app, f"/api/exams/{seed.exam_a.id}/evidence/0", admin) == (200, seed.evidence_png)
    if any(getattr(r, "path", None) == "/static" for r in flat_routes(seed.app)):
        status_code, body = raw_get(seed.app, "/static/index.html")
        assert status_code == 200 and b"<html" in body.lower(), "the static folder is reached by this helper"
    assert probes == len(prefixes) * len(targets) * 2


def test_oversized_and_out_of_range_parameters(seed: Seed) -> None:
    admin = seed.headers["admin"]
    huge = str(10**30)
    long_text = "胸" * 1500  # 13.5 kB encoded; the client refuses much longer query strings
    checks: list[tuple[str, dict[str, Any]]] = []
    if has_route(seed.app, "get", "/api/exams"):
        checks += [("/api/exams", {"q": long_text}), ("/api/exams", {"limit": 10**9}), ("/api/exams", {"limit": -1}),
                   ("/api/exams", {"offset": huge}), ("/api/exams", {"offset": 2**63}), ("/api/exams", {"offset": -5}),
                   ("/api/exams", {"patient_id": huge}), ("/api/exams", {"grade": long_text}),
                   ("/api/exams", {"date_from": "9999-99-99"}), ("/api/exams", {"q": "\x00"})]
        r = seed.client.get("/api/exams", params={"limit": 10**9}, headers=admin)
        assert r.status_code == 422, "limit is bounded (1..200)"
    for template in ("/api/exams/{exam_id}", "/api/series/{series_id}/stack", "/api/instances/{instance_id}/rendered",
                     "/api/patients/{patient_id}/exams", "/api/exams/{exam_id}/recognition"):
        route = _route_like(seed.app, "get", template)
        if route is not None:
            for value in (huge, str(2**63), str(2**31), "-1", "0"):
                checks.append((_fill_all(route.path, value), {}))
    if _route_like(seed.app, "get", "/dicomweb/studies") is not None:
        checks += [("/dicomweb/studies", {"limit": huge}), ("/dicomweb/studies", {"offset": huge}),
                   ("/dicomweb/studies", {"StudyInstanceUID": "1." * 3000}), ("/dicomweb/studies", {"StudyDate": "\x00"})]
    route = _route_like(seed.app, "get", "/api/instances/{instance_id}/rendered")
    if route is not None:
        url = route.path.replace("{instance_id}", str(seed.exam_a.instance_ids[0]))
        checks += [(url, {"window": "1e308,1e308"}), (url, {"window": "nan,nan"}), (url, {"window": "0,0"}),
                   (url, {"window": "40," + "9" * 400}), (url, {"format": "../../etc/passwd"})]
    failures = []
    for url, params in checks:
        r = seed.client.get(url, params=params, headers=admin)
        if r.status_code >= 500:
            failures.append(f"GET {url} {str(params)[:80]}: {r.status_code}")
        _assert_no_file_content(r, seed, url)
    assert not failures, "server errors:\n" + "\n".join(failures)
    if not checks:
        pytest.skip("no parameterised route on main yet")


# ----------------------------------------------------------------------------- contract coverage

CONTRACT_ROUTES = [
    ("get", "/api/exams"), ("get", "/api/exams/{exam_id}"), ("get", "/api/exams/{exam_id}/evidence/{n}"),
    ("get", "/api/patients/{patient_id}/exams"), ("get", "/api/recognition/reasons"),
    ("post", "/api/exams/{exam_id}/recognition"), ("get", "/api/exams/{exam_id}/recognition"),
    ("get", "/api/patients/{patient_id}/repeat-check"), ("get", "/api/stats/recognition"), ("get", "/api/stats/qc"),
    ("get", "/api/admin/users"), ("post", "/api/admin/users"), ("post", "/api/authorisations"),
    ("delete", "/api/authorisations/{id}"), ("get", "/api/audit-log"), ("get", "/api/audit-log/verify"),
    ("get", "/dicomweb/studies"), ("get", "/dicomweb/studies/{study}/metadata"),
    ("get", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}"),
    ("get", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered"),
    ("get", "/dicomweb/studies/{study}/series/{series}/instances/{instance}"),
    ("get", "/api/series/{series_id}/thumbnail"), ("get", "/api/series/{series_id}/stack"),
    ("get", "/api/instances/{instance_id}/rendered"),
]


def test_contract_routes_exist(seed: Seed) -> None:
    """Every route of /tmp/serving_contract.md is in the app, so the probes above all run."""
    missing = [f"{mt.upper()} {p}" for mt, p in CONTRACT_ROUTES if _route_like(seed.app, mt, p) is None]
    assert not missing, f"contract routes missing: {missing}"


def test_security_doc_roles_table_matches_roles_yaml() -> None:
    """docs/security.md's role table is serving/roles.yaml: a permission moved in one shows in the other."""
    from radqc.serving.security.roles import load_roles

    book = load_roles()
    text = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text(encoding="utf-8")
    table = text.split("<!-- roles-table:start -->")[1].split("<!-- roles-table:end -->")[0].strip().splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    roles = header[1:]
    assert set(roles) == set(book.roles), roles
    seen = set()
    for line in table[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "**scope**":
            assert cells[1:] == [book.roles[r].scope for r in roles]
            continue
        permission = cells[0].split("`")[1]
        seen.add(permission)
        granted = {role for role, cell in zip(roles, cells[1:], strict=True) if cell == "✓"}
        assert granted == {r for r in roles if permission in book.roles[r].permissions}, permission
    assert seen == set(book.permissions)


def test_values_the_catalogue_cannot_hold_answer_422_not_500(workspace) -> None:  # type: ignore[no-untyped-def]
    """serving/app.py's handler, on a route that passes the caller's values straight to the
    database: an id past the integer column (SQLite: OverflowError, PostgreSQL: DataError) and a
    NUL byte in text (PostgreSQL: DataError) are 422; any other OverflowError stays a 500."""
    from fastapi import Depends
    from sqlalchemy.orm import Session

    from radqc.serving.app import create_app
    from radqc.serving.security.deps import db

    app = create_app(workspace)

    @app.get("/test-only/exams/{exam_id}")
    def by_id(exam_id: int, session: Session = Depends(db)) -> dict[str, Any]:
        return {"found": session.get(m.Exam, exam_id) is not None}

    @app.get("/test-only/search")
    def by_text(q: str, session: Session = Depends(db)) -> dict[str, Any]:
        return {"n": len(session.scalars(select(m.Exam.id).where(m.Exam.accession_number == q)).all())}

    @app.get("/test-only/overflow")
    def overflow() -> dict[str, Any]:
        return {"x": float(10**400)}

    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/test-only/exams/1").json() == {"found": False}
    for value in (2**31, 2**63, 10**30):
        r = client.get(f"/test-only/exams/{value}")
        assert r.status_code in (200, 422), (value, r.status_code)  # 200 where the backend can hold it
        if r.status_code == 422:
            assert "out of range" in r.json()["detail"]
    assert client.get(f"/test-only/exams/{10**30}").status_code == 422
    postgres = workspace.engine.dialect.name == "postgresql"
    assert client.get(f"/test-only/exams/{2**31}").status_code == (422 if postgres else 200)
    assert client.get("/test-only/search", params={"q": "a\x00b"}).status_code == (422 if postgres else 200)
    assert client.get("/test-only/overflow").status_code == 500
