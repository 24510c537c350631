"""The doctor's page in a real browser (Debian's Chromium driven by Playwright) against a live server.

The story of issue #8: a doctor at the later hospital opens a returning patient, sees the other
hospital's CT with its grade badge, opens it, scrolls and windows the stack, reads the QC panel,
records 不互认 with a quality reason; a QC expert then sees the decision counted in the
statistics; a doctor of a third hospital without the patient's authorisation is refused; the
page switches to English. Expected values are read from the API (never hard-coded), so the
tests fail when the page shows something other than what the service says.

Screenshots land in a temporary folder (printed in the failure output) — not asserted.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving_live import LiveService, live_service  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]
VIEWPORT = {"width": 1366, "height": 768}
TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/install-services.sh must install Debian's chromium for CI")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def new_page(browser: Any, live_service: LiveService, shots: Path, request: pytest.FixtureRequest):  # noqa: F811
    """A fresh browser context per user (its own sessionStorage), zh-CN at 1366x768."""
    contexts: list[Any] = []

    def make() -> Any:
        ctx = browser.new_context(viewport=VIEWPORT, locale="zh-CN", base_url=live_service.base_url)
        ctx.set_default_timeout(TIMEOUT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    errors: list[str] = []
    yield make
    for n, ctx in enumerate(contexts):
        for k, page in enumerate(ctx.pages):
            try:
                page.screenshot(path=str(shots / f"{request.node.name}-{n}-{k}-final.png"))
            except Exception:  # noqa: BLE001 — a screenshot is a convenience, never a failure
                pass
        ctx.close()
    print(f"screenshots: {shots}")
    assert not errors, f"JavaScript errors on the page: {errors}"


_tokens: dict[tuple[str, str], str] = {}


def api_get(live: LiveService, username: str, path: str) -> Any:
    """The API's own answer, to compare what the page shows against (one login per user: Argon2 is slow)."""
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        key = (live.base_url, username)
        if key not in _tokens:
            r = client.post("/api/auth/token", data={"username": username, "password": live.password})
            assert r.status_code == 200, r.text
            _tokens[key] = r.json()["access_token"]
        r = client.get(path, headers={"Authorization": f"Bearer {_tokens[key]}"})
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
        return r.json()


def log_in(page: Any, username: str, password: str) -> None:
    page.goto("/")
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    page.wait_for_function("() => !!sessionStorage.getItem('radqc.token') && document.body.dataset.ready === '1'")
    page.get_by_test_id("search-form").wait_for()


def canvas_digest(page: Any) -> str:
    """A hash of the canvas pixels: proves a different picture was drawn."""
    data = page.evaluate("() => document.querySelector('[data-testid=viewer-canvas]').toDataURL('image/png')")
    return hashlib.sha256(data.encode()).hexdigest()


def viewer_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("() => ({...window.radqcViewer})")
    return state


def wait_stack_loaded(page: Any) -> None:
    page.wait_for_function("() => window.radqcViewer && window.radqcViewer.count > 0 "
                           "&& window.radqcViewer.loaded === window.radqcViewer.count")


def test_doctor_opens_other_hospital_exam_and_refuses_it_for_quality(new_page, live_service: LiveService,  # noqa: F811
                                                                     shots: Path) -> None:
    live = live_service
    doctor = live.users["later"]
    page = new_page()
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    log_in(page, doctor, live.password)
    token = page.evaluate("() => sessionStorage.getItem('radqc.token')")

    # the patient's exams: the other hospital's CT first, with the grade badge the API gives
    expected = api_get(live, doctor, f"/api/patients/{live.later_patient_id}/exams")
    ct_summary = next(e for e in expected["items"] if e["id"] == live.ct_exam_id)
    page.goto(f"/#/patient/{live.later_patient_id}")
    rows = page.get_by_test_id("exam-row")
    rows.first.wait_for()
    assert rows.count() == len(expected["items"]) >= 2
    first = rows.first
    assert first.get_attribute("data-own") == "0"
    assert first.get_attribute("data-exam-id") == str(live.ct_exam_id)
    badge = first.get_by_test_id("grade-badge")
    ct_qc = ct_summary["qc"] or {}
    assert badge.inner_text().strip() == (str(ct_qc["grade"]) if ct_qc.get("grade") is not None else "—")
    if ct_qc.get("score") is not None:
        assert first.get_by_test_id("exam-score").inner_text().strip() == f"{float(ct_qc['score']):.1f}"
    page.screenshot(path=str(shots / "patient.png"))

    # open it: the first image is drawn
    first.click()
    page.get_by_test_id("exam-view").wait_for()
    page.wait_for_function("() => performance.getEntriesByName('radqc:first-image').length > 0")
    detail = api_get(live, doctor, f"/api/exams/{live.ct_exam_id}")
    series = max(detail["series"], key=lambda s: s["instances"])
    assert series["instances"] >= 2, "the seeded CT needs a multi-slice series"
    page.locator(f"[data-testid=series-thumb][data-series-id='{series['id']}']").click()
    page.wait_for_function(f"() => window.radqcViewer.seriesId === {series['id']} && window.radqcViewer.count > 0")
    wait_stack_loaded(page)
    page.wait_for_function("() => performance.getEntriesByName('radqc:stack-loaded').length > 0")
    state = viewer_state(page)
    assert state["count"] == series["instances"] and state["index"] == 0
    before = canvas_digest(page)

    # scroll: the slice index changes and a different frame is drawn
    canvas = page.get_by_test_id("viewer-canvas")
    canvas.hover()
    for k in (1, 2, 3):
        page.mouse.wheel(0, 120)
        page.wait_for_function(f"() => window.radqcViewer.index === {k}")
    scrolled = canvas_digest(page)
    assert scrolled != before
    canvas.press("ArrowUp")
    page.wait_for_function("() => window.radqcViewer.index === 2")
    page.screenshot(path=str(shots / "exam-scrolled.png"))

    # window: a preset other than the current window changes the drawn pixels
    presets = page.get_by_test_id("preset-buttons").locator("button[data-center]")
    assert presets.count() >= 3, "the CT stack offers presets"
    current = state["window"]
    target = None
    for i in range(presets.count()):
        b = presets.nth(i)
        cw = (float(b.get_attribute("data-center") or 0), float(b.get_attribute("data-width") or 0))
        if current is None or cw != (current["center"], current["width"]):
            target = (b, cw)
            break
    assert target is not None
    before_window = canvas_digest(page)
    target[0].click()
    page.wait_for_function(f"() => window.radqcViewer.window && window.radqcViewer.window.center === {target[1][0]} "
                           f"&& window.radqcViewer.window.width === {target[1][1]}")
    wait_stack_loaded(page)
    page.wait_for_function(f"() => window.radqcViewer.drawnWindow === '{target[1][0]:g},{target[1][1]:g}'")
    assert canvas_digest(page) != before_window
    # drag on the image = window/level: the window follows the mouse
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2 + 40, steps=4)
    page.mouse.up()
    page.wait_for_function(f"() => window.radqcViewer.window.width !== {target[1][1]}")
    # zoom by button and ctrl+wheel
    page.get_by_test_id("zoom-in").click()
    assert viewer_state(page)["zoom"] > 1
    page.screenshot(path=str(shots / "exam-windowed.png"))

    # the QC panel shows the API's dimension values
    image_qc = detail["image_qc"]
    assert image_qc is not None, "the pipeline produced image QC for the CT"
    for dim, body in image_qc["dimensions"].items():
        cell = page.get_by_test_id(f"qc-dim-{dim}")
        assert cell.get_attribute("data-value") == (body.get("value") or ""), dim
        if body.get("value"):
            assert cell.inner_text().startswith(body["value"])
    assert page.get_by_test_id("qc-deduction").count() == len(image_qc["deductions"])
    evidence = [(n, e) for n, d in enumerate(image_qc["deductions"]) for e in d.get("evidence", []) if e.get("image_url")]
    if evidence:
        _, ev = evidence[0]
        page.get_by_test_id("evidence-thumb").first.click()
        page.wait_for_function(f"() => window.radqcViewer.index === {ev.get('instance_index') or 0}")

    # the exam view fits a 1366x768 screen: no horizontal scroll, and the image keeps most of it
    assert page.evaluate("() => document.documentElement.scrollWidth") <= VIEWPORT["width"]
    assert box["width"] >= 700 and box["height"] >= 450, box

    # 不互认 with a quality reason: the label shows, the API lists the decision
    reasons = api_get(live, doctor, "/api/recognition/reasons")["reasons"]
    quality = next(r for r in reasons if r["category"] == "quality")
    page.get_by_test_id("recognise-reject").click()
    page.get_by_test_id("reject-dialog").wait_for()
    assert page.get_by_test_id("reasons-quality").locator("input").count() == sum(
        1 for r in reasons if r["category"] == "quality")
    page.get_by_test_id(f"reason-{quality['code']}").check()
    page.get_by_test_id("reject-comment").fill("层厚不足，需重新检查")
    page.get_by_test_id("reject-confirm").click()
    label = page.get_by_test_id("recognition-status").get_by_test_id("recognition-label")
    label.filter(has_text=f"不互认：{quality['zh']}").wait_for()
    decisions = api_get(live, doctor, f"/api/exams/{live.ct_exam_id}/recognition")["items"]
    assert any(d["decision"] == "不互认" and d["reason_code"] == quality["code"] for d in decisions)
    page.screenshot(path=str(shots / "exam-refused.png"))

    # the token never travels in a URL (images come through fetch + blob URLs)
    assert token and not any(token in url for url in requests)

    # a QC expert sees the decision counted for the CT's hospital
    stats = api_get(live, live.users["stats"], "/api/stats/recognition?by=hospital")
    row = next(r for r in stats["rows"] if r["key"] == live.ct_hospital)
    assert row["not_recognised_quality"] >= 1
    expert = new_page()
    log_in(expert, live.users["stats"], live.password)
    expert.get_by_test_id("nav-stats").click()
    table_row = expert.locator(f"[data-testid=stats-row][data-key='{live.ct_hospital}']")
    table_row.wait_for()
    assert table_row.get_by_test_id("stats-not-recognised-quality").inner_text() == str(row["not_recognised_quality"])
    assert table_row.get_by_test_id("stats-decisions").inner_text() == str(row["decisions"])
    assert expert.get_by_test_id("stats-chart").locator("rect").count() == len(stats["rows"])
    expert.screenshot(path=str(shots / "stats.png"))
    # CSV export: fetched with the token (not in a URL), saved by the browser, UTF-8 with BOM
    with expert.expect_download() as download:
        expert.get_by_test_id("stats-csv").click()
    csv_path = download.value.path()
    assert csv_path is not None
    csv_text = Path(csv_path).read_bytes()
    assert csv_text.startswith(b"\xef\xbb\xbf") and live.ct_hospital.encode() in csv_text

    # the doctor changes their mind: 互认 replaces the label, the API's latest decision follows
    page.get_by_test_id("recognise-accept").click()
    label.filter(has_text="已互认").wait_for()
    latest = api_get(live, doctor, f"/api/exams/{live.ct_exam_id}")["recognition"]
    assert latest["decision"] == "互认" and latest["reason_code"] is None


def test_doctor_without_authorisation_is_refused_and_sees_no_image(new_page, live_service: LiveService) -> None:  # noqa: F811
    live = live_service
    page = new_page()
    image_responses: list[tuple[str, int]] = []
    page.on("response", lambda r: image_responses.append((r.url, r.status))
            if "/api/series/" in r.url or "/api/instances/" in r.url else None)
    log_in(page, live.users["third"], live.password)
    page.goto(f"/#/exam/{live.ct_exam_id}")
    page.get_by_test_id("refusal").wait_for()
    assert page.get_by_test_id("viewer-canvas").count() == 0
    page.goto(f"/#/patient/{live.ct_patient_id}")
    page.get_by_test_id("refusal").wait_for()
    assert page.get_by_test_id("exam-row").count() == 0
    # a deep link (/app/exam/N, e.g. from the HIS) becomes the hash route and meets the same refusal
    page.goto(f"/app/exam/{live.ct_exam_id}")
    page.wait_for_function(f"() => location.pathname === '/' && location.hash === '#/exam/{live.ct_exam_id}'")
    page.get_by_test_id("refusal").wait_for()
    assert not [u for u, status in image_responses if status == 200]


def test_english_switch_and_login_error(new_page, live_service: LiveService, shots: Path) -> None:  # noqa: F811
    live = live_service
    page = new_page()
    page.goto("/")
    assert page.get_by_test_id("login-submit").inner_text() == "登录"
    page.get_by_test_id("login-username").fill(live.users["later"])
    page.get_by_test_id("login-password").fill("not-the-password")
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("login-error").wait_for()
    assert page.evaluate("() => sessionStorage.getItem('radqc.token')") is None
    log_in(page, live.users["later"], live.password)
    assert page.get_by_test_id("nav-search").inner_text() == "检查查询"
    page.get_by_test_id("search-results").get_by_test_id("exam-row").first.wait_for()
    page.screenshot(path=str(shots / "search.png"))
    page.get_by_test_id("lang-switch").click()
    page.get_by_test_id("nav-search").filter(has_text="Exams").wait_for()
    assert page.get_by_test_id("logout").inner_text() == "Log out"
    assert page.get_by_test_id("search-submit").inner_text() == "Search"
    page.goto(f"/#/exam/{live.ct_exam_id}")
    page.get_by_test_id("qc-panel").wait_for()
    assert "Quality control" in page.get_by_test_id("qc-panel").inner_text()
    assert page.get_by_test_id("recognise-reject").inner_text() == "Do not recognise"
    page.wait_for_function("() => performance.getEntriesByName('radqc:first-image').length > 0")
    page.screenshot(path=str(shots / "exam-en.png"))
    # QC values (a Chinese vocabulary) are shown in English too, from the i18n data
    english = {k[len("value."):]: v for k, v in httpx.get(f"{live.base_url}/static/i18n/en.json").json().items()
               if k.startswith("value.")}
    for cell in page.locator("[data-testid^=qc-dim-]").all():
        value = cell.get_attribute("data-value") or ""
        if value in english:
            assert cell.inner_text().startswith(english[value]), value
    # the choice is remembered; switching back gives Chinese again
    page.reload()
    page.get_by_test_id("nav-search").filter(has_text="Exams").wait_for()
    page.get_by_test_id("lang-switch").click()
    page.get_by_test_id("nav-search").filter(has_text="检查查询").wait_for()


def test_page_carries_no_data_and_sets_the_csp(live_service: LiveService) -> None:  # noqa: F811
    """The page and static files need no token (they hold no data); the API still does."""
    with httpx.Client(base_url=live_service.base_url, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script src=\"/static/app.js\"" in page.text and "onclick=" not in page.text
        assert client.get("/app/exam/1").text == page.text
        assert client.get("/static/i18n/en.json").json()["rec.accepted"] == "Recognised"
        assert client.get("/static/../serving/app.py").status_code == 404
        assert client.get(f"/api/exams/{live_service.ct_exam_id}").status_code == 401
        schema = client.get("/openapi.json")
        paths = schema.json()["paths"] if schema.status_code == 200 else {}
        assert "/" not in paths and not any(p.startswith("/static") or p.startswith("/app") for p in paths)


def test_repeat_reminder_and_evidence_jump(new_page, live_service: LiveService) -> None:  # noqa: F811
    """The repeated-exam reminder lists the other hospital's CT; an evidence picture jumps to its slice."""
    from datetime import UTC, datetime

    live = live_service
    doctor = live.users["later"]
    ct = api_get(live, doctor, f"/api/exams/{live.ct_exam_id}")
    item = ct["items"][0]["code"]
    days = (datetime.now(UTC) - datetime.fromisoformat(ct["exam_time"].replace("Z", "+00:00"))).days + 30
    expected = api_get(live, doctor, f"/api/patients/{live.later_patient_id}/repeat-check?item={item}&window_days={days}")
    assert live.ct_exam_id in [e["id"] for e in expected["items"]]
    page = new_page()
    log_in(page, doctor, live.password)
    page.goto(f"/#/patient/{live.later_patient_id}")
    page.get_by_test_id("repeat-item").fill(item)
    page.get_by_test_id("repeat-window").fill(str(days))
    page.get_by_test_id("repeat-submit").click()
    found = page.get_by_test_id("repeat-found")
    found.wait_for()
    shown = [int(r.get_attribute("data-exam-id")) for r in found.get_by_test_id("exam-row").all()]
    assert sorted(shown) == sorted(e["id"] for e in expected["items"])

    # evidence: the seeded catalogue has exams whose deductions carry pictures (region scope sees them)
    expert = live.users["stats"]
    listing = api_get(live, expert, "/api/exams?limit=50")["items"]
    target = None
    for summary in listing:
        detail = api_get(live, expert, f"/api/exams/{summary['id']}")
        evidence = [e for d in (detail["image_qc"] or {}).get("deductions", []) for e in d.get("evidence", [])
                    if e.get("image_url")]
        if evidence:
            target = (detail, evidence[0])
            break
    assert target is not None, "the seeded catalogue has no evidence picture; pick another seed"
    detail, ev = target
    series_id = ev.get("series_id") or next(s["id"] for s in detail["series"]
                                            if s["series_instance_uid"] == ev["series_uid"])
    index = ev.get("instance_index") or 0
    page = new_page()
    log_in(page, expert, live.password)
    page.goto(f"/#/exam/{detail['id']}")
    page.wait_for_function("() => performance.getEntriesByName('radqc:first-image').length > 0")
    # start somewhere else than the evidence: another series, or another slice of the same one
    others = [s for s in detail["series"] if s["id"] != series_id and s["instances"] > 0]
    if others:
        page.locator(f"[data-testid=series-thumb][data-series-id='{others[0]['id']}']").click()
        page.wait_for_function(f"() => window.radqcViewer.seriesId === {others[0]['id']}")
    page.get_by_test_id("evidence-thumb").first.click()
    page.wait_for_function(f"() => window.radqcViewer.seriesId === {series_id} && window.radqcViewer.index === {index}")
    page.wait_for_function("() => performance.getEntriesByName('radqc:first-image').length > 0")
    assert page.locator(f"[data-testid=series-thumb][data-series-id='{series_id}']").get_attribute("class").endswith(
        "selected")


def test_revoked_token_asks_for_login_and_returns_to_the_page(new_page, live_service: LiveService) -> None:  # noqa: F811
    """A token that stops working (revoked, expired) leads to the login form, then back to the same exam."""
    from sqlalchemy import update

    from radqc.catalogue import models as m
    from radqc.serving.accounts import create_user

    live = live_service
    with live.workspace.transaction() as s:
        create_user(s, "dr_revoked", "doctor", password=live.password, hospital_code=live.later_hospital)
    page = new_page()
    log_in(page, "dr_revoked", live.password)
    page.goto(f"/#/exam/{live.ct_exam_id}")
    page.get_by_test_id("qc-panel").wait_for()
    wait_stack_loaded(page)  # nothing in flight any more
    with live.workspace.transaction() as s:  # what a password change or an admin's revocation does
        s.execute(update(m.AppUser).where(m.AppUser.username == "dr_revoked")
                  .values(token_version=m.AppUser.token_version + 1))
    page.get_by_test_id("exam-patient").click()
    page.get_by_test_id("login-form").wait_for()
    assert page.evaluate("() => sessionStorage.getItem('radqc.token')") is None
    # nothing of the exam stays in the page behind the login form
    assert page.get_by_test_id("exam-view").count() == 0 and page.get_by_test_id("qc-panel").count() == 0
    page.get_by_test_id("login-username").fill("dr_revoked")
    page.get_by_test_id("login-password").fill(live.password)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("patient-exams").wait_for()
    assert page.evaluate("() => location.hash") == f"#/patient/{live.ct_patient_id}"


def test_long_stack_beyond_the_memory_budget_still_scrolls(new_page, live_service: LiveService) -> None:  # noqa: F811
    """Past the decoded-frame budget the farthest frames are dropped and decoded again when scrolled to."""
    live = live_service
    detail = api_get(live, live.users["later"], f"/api/exams/{live.ct_exam_id}")
    longest = max(detail["series"], key=lambda s: s["instances"])
    assert longest["instances"] > 16, "the budget keeps at least 16 frames: the test needs a longer series"
    page = new_page()
    page.add_init_script("window.RADQC_BITMAP_BUDGET = 1")  # -> the minimum of 16 decoded frames
    log_in(page, live.users["later"], live.password)
    page.goto(f"/#/exam/{live.ct_exam_id}")
    page.wait_for_function(f"() => window.radqcViewer.seriesId === {longest['id']}")
    wait_stack_loaded(page)
    state = viewer_state(page)
    assert state["loaded"] == longest["instances"] and state["decoded"] <= 16
    first = canvas_digest(page)
    page.get_by_test_id("viewer-canvas").press("End")
    last = longest["instances"] - 1
    page.wait_for_function(f"() => window.radqcViewer.index === {last} && window.radqcViewer.drawnWindow !== null")
    assert canvas_digest(page) != first
    assert viewer_state(page)["decoded"] <= 16
