// RadQC doctor's page (互认 view). Plain modern JS, no build step, nothing from the internet.
//
// Why it is shaped like this:
// * The CSP is script-src 'self': no inline handlers, every listener is attached here.
// * The login token lives in sessionStorage and travels only in the Authorization header;
//   images are fetched with that header and shown through blob URLs / canvas, so the token
//   never appears in a URL (logs, referrers, history).
// * The whole stack of a series is prefetched with a few parallel requests, decoded to
//   ImageBitmaps, so scrolling draws from memory. Window/level is applied by the server
//   (it owns the pixel data and the watermark); while dragging, a linear SVG filter previews
//   the new window over the current frames, then the frames are fetched again at the new
//   window (current slice first).
// * performance marks 'radqc:exam-open', 'radqc:first-image' and 'radqc:stack-loaded' and
//   window.radqcViewer let the benchmark measure what the doctor waits for.
"use strict";

const TOKEN_KEY = "radqc.token";
const USER_KEY = "radqc.user";
const LANG_KEY = "radqc.lang";
const PREFETCH_CONCURRENCY = 6;
// Decoded frames are RGBA (1 MiB for 512²): keep at most this much decoded, nearest the current
// slice first; the rest stay as their small PNG blobs and are decoded again when scrolled to.
// 384 MiB holds a 366-slice 512² stack entirely.
const BITMAP_BUDGET_BYTES = 384 * 1024 * 1024;
const GRADE_CLASS = { "甲": "g0", "乙": "g1", "丙": "g2", "丁": "g3", "3": "g0", "2": "g1", "1": "g2", "0": "g3" };
const NORMAL_VALUES = new Set(["正常", "标准", "无", "完整"]);
const NA_VALUES = new Set(["无法评估", "不适用"]);
const DIMENSIONS = ["range", "positioning", "artifact", "centring", "noise", "sharpness", "reconstruction",
  "window", "sequences", "dose"];

const state = {
  lang: localStorage.getItem(LANG_KEY) || "zh",
  messages: {},
  user: null,
  reasons: null,
  exam: null,
  lastSearch: "",
};

// ---------------------------------------------------------------------------------- i18n
async function loadMessages() {
  for (const lang of ["zh", "en"]) {
    if (!state.messages[lang]) {
      const r = await fetch(`/static/i18n/${lang}.json`);
      state.messages[lang] = await r.json();
    }
  }
}

function t(key, vars) {
  const table = state.messages[state.lang] || {};
  let text = table[key] ?? (state.messages.zh || {})[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) text = text.replaceAll(`{${k}}`, String(v));
  return text;
}

function applyStaticText() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = t("app.title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

/** A QC value (the vocabulary is Chinese, docs/image-qc.md) in the page's language. */
function valueText(value) {
  if (value === null || value === undefined) return "—";
  return (state.messages[state.lang] || {})[`value.${value}`] ?? value;
}

function bi(zh, en) { return state.lang === "zh" ? (zh ?? en ?? "") : (en ?? zh ?? ""); }

// ----------------------------------------------------------------------------------- DOM
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "testid") el.dataset.testid = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function content() { return document.getElementById("view-content"); }

function showView(name) {
  document.getElementById("view-login").hidden = name !== "login";
  content().hidden = name !== "content";
}

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

function gradeBadge(grade, testid) {
  const g = grade === null || grade === undefined ? null : String(grade);
  const hint = g === null ? null : t(/^[0-3]$/.test(g) ? "grade.hint.ct_mr" : "grade.hint.radiograph");
  return h("span", { class: `badge ${g !== null && GRADE_CLASS[g] ? GRADE_CLASS[g] : "gna"}`, testid, title: hint,
    dataset: { grade: g ?? "" } }, g ?? "—");
}

function fmtScore(score) { return score === null || score === undefined ? "—" : Number(score).toFixed(1); }

// ----------------------------------------------------------------------------------- API
class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const tok = token();
  if (tok) headers.set("Authorization", `Bearer ${tok}`);
  if (options.json !== undefined) {
    headers.set("Content-Type", "application/json");
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const r = await fetch(path, { ...options, headers, signal: options.signal });
  if (r.status === 401 && tok) {
    // token expired or revoked: log in again and come back to the same page
    sessionStorage.setItem("radqc.return", location.hash);
    logout();
    throw new ApiError(401, t("login.title"));
  }
  if (!r.ok) {
    let detail = r.statusText;
    try { const body = await r.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (e) { /* not JSON */ }
    throw new ApiError(r.status, detail);
  }
  return options.raw ? r : r.json();
}

async function apiBlob(path, signal) {
  const r = await api(path, { raw: true, signal });
  return r.blob();
}

/** An <img> whose picture is fetched with the token (never in the URL) and shown as a blob URL. */
function authImage(path, attrs) {
  const img = h("img", { alt: "", ...attrs });
  apiBlob(path).then((blob) => {
    const url = URL.createObjectURL(blob);
    img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
    img.src = url;
    img.dataset.loaded = "1";
  }).catch(() => { img.dataset.loaded = "error"; });
  return img;
}

// --------------------------------------------------------------------------------- login
async function login(event) {
  event.preventDefault();
  const form = event.target;
  const error = document.getElementById("login-error");
  error.hidden = true;
  const body = new URLSearchParams({ username: form.username.value, password: form.password.value });
  try {
    const r = await fetch("/api/auth/token", { method: "POST", body,
      headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    const data = await r.json();
    if (!r.ok) throw new ApiError(r.status, data.detail);
    sessionStorage.setItem(TOKEN_KEY, data.access_token);
    state.user = await api("/api/auth/me");
    sessionStorage.setItem(USER_KEY, JSON.stringify(state.user));
    form.password.value = "";
    const back = sessionStorage.getItem("radqc.return");
    sessionStorage.removeItem("radqc.return");
    if (back && back !== "#/login" && back !== location.hash) location.hash = back;
    else if (!location.hash || location.hash === "#/login") location.hash = "#/search";
    else route();
  } catch (e) {
    error.textContent = `${t("login.failed")}: ${e.message}`;
    error.hidden = false;
  }
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
  state.user = null;
  state.reasons = null;
  state.exam = null;
  stopViewer();
  content().replaceChildren();  // no patient data stays in the page (shared workstations)
  location.hash = "#/login";
  route();
}

function can(permission) { return !!(state.user && state.user.permissions.includes(permission)); }

function updateChrome() {
  const logged = !!state.user;
  document.getElementById("nav").hidden = !logged;
  document.getElementById("logout").hidden = !logged;
  document.getElementById("nav-stats").hidden = !can("stats.read");
  const who = document.getElementById("whoami");
  who.textContent = logged
    ? `${state.user.display_name || state.user.username} · ${bi(state.user.role_label?.zh, state.user.role_label?.en)}${state.user.hospital ? " · " + state.user.hospital : ""}`
    : "";
}

// -------------------------------------------------------------------------------- router
async function route() {
  applyStaticText();
  updateChrome();
  if (!token()) { stopViewer(); showView("login"); return; }
  if (!state.user) {
    try { state.user = JSON.parse(sessionStorage.getItem(USER_KEY)) || await api("/api/auth/me"); }
    catch (e) { logout(); return; }
    updateChrome();
  }
  showView("content");
  const [path, search] = (location.hash || "#/search").replace(/^#\/?/, "").split("?");
  const [page, id] = path.split("/");
  const query = new URLSearchParams(search || "");
  if (page !== "exam") stopViewer();
  try {
    if (page === "patient" && id) await renderPatient(id, query);
    else if (page === "exam" && id) await renderExam(id, query);
    else if (page === "stats") await renderStats(query);
    else await renderSearch(query);
  } catch (e) {
    renderError(e);
  }
}

function renderError(e) {
  if (e instanceof ApiError && e.status === 401) return;  // already back at the login form
  const root = content();
  root.replaceChildren();
  if (e instanceof ApiError && (e.status === 404 || e.status === 403)) {
    root.append(h("div", { class: "notice refused", testid: "refusal" }, t("refused")));
  } else {
    root.append(h("div", { class: "notice refused", testid: "error" }, `${t("error")}: ${e.message}`));
  }
}

// -------------------------------------------------------------------------------- search
function examTable(items, { showPatient = true } = {}) {
  const head = h("tr", {}, h("th", {}, t("col.grade")), h("th", {}, t("col.score")), h("th", {}, t("col.time")),
    h("th", {}, t("col.hospital")), h("th", {}, t("col.modality")), h("th", {}, t("col.description")),
    showPatient ? h("th", {}, t("col.patient")) : null, h("th", {}, t("col.recognition")));
  const rows = items.map((ex) => {
    const qc = ex.qc || {};
    const other = !ex.own_hospital;
    const tr = h("tr", { class: `clickable${other ? " other" : ""}`, testid: "exam-row",
      dataset: { examId: ex.id, own: ex.own_hospital ? "1" : "0", grade: qc.grade ?? "", score: qc.score ?? "" } },
      h("td", {}, gradeBadge(qc.grade, "grade-badge")),
      h("td", { testid: "exam-score" }, fmtScore(qc.score)),
      h("td", {}, fmtTime(ex.exam_time)),
      h("td", {}, ex.hospital?.name || ex.hospital?.code || "", " ",
        h("span", { class: `tag${other ? " other" : ""}` }, other ? t("other_hospital") : t("own_hospital"))),
      h("td", {}, ex.modality || ""),
      h("td", {}, ex.description || "", ex.items?.length ? h("div", { class: "muted" }, ex.items.map((i) => i.name).join("、")) : null),
      showPatient ? h("td", {}, ex.patient ? h("a", { href: `#/patient/${ex.patient.id}`, testid: "patient-link",
        onclick: (e) => e.stopPropagation() }, ex.patient.name || `#${ex.patient.id}`,
        ex.patient.sex ? ` · ${ex.patient.sex}` : "", ex.patient.birth_year ? ` · ${ex.patient.birth_year}` : "") : "") : null,
      h("td", {}, recognitionLabel(ex.recognition)));
    tr.addEventListener("click", () => { location.hash = `#/exam/${ex.id}`; });
    return tr;
  });
  return h("table", { testid: "exam-table" }, h("thead", {}, head), h("tbody", {}, rows));
}

function recognitionLabel(rec) {
  if (!rec || !rec.decision) return h("span", { class: "rec-label", testid: "recognition-label" });
  if (rec.decision === "互认") return h("span", { class: "rec-label accepted", testid: "recognition-label" }, t("rec.accepted"));
  const reason = rec.reason ? bi(rec.reason.zh, rec.reason.en) : reasonText(rec.reason_code);
  return h("span", { class: "rec-label rejected", testid: "recognition-label" }, t("rec.rejected", { reason }));
}

function reasonText(code) {
  const r = (state.reasons || []).find((x) => x.code === code);
  return r ? bi(r.zh, r.en) : (code || "");
}

async function renderSearch(query) {
  const root = content();
  const q = query.get("q") || "";
  const patientId = query.get("patient_id") || "";
  const modality = query.get("modality") || "";
  const other = query.get("other_hospitals") === "true";
  const form = h("form", { class: "searchbar", testid: "search-form" },
    h("input", { name: "q", value: q, placeholder: t("search.placeholder"), testid: "search-q", size: 28 }),
    h("input", { name: "patient_id", value: patientId, placeholder: t("search.patient_id"), testid: "search-patient", size: 10 }),
    h("select", { name: "modality", testid: "search-modality" },
      ["", "CT", "MR", "DX", "CR", "DR"].map((mo) => h("option", { value: mo, selected: mo === modality }, mo || t("search.modality")))),
    h("label", {}, h("input", { type: "checkbox", name: "other_hospitals", checked: other, testid: "search-other" }), " ", t("search.other_hospitals")),
    h("button", { type: "submit", class: "primary", testid: "search-submit" }, t("search.submit")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const name of ["q", "patient_id", "modality"]) if (form[name].value.trim()) p.set(name, form[name].value.trim());
    if (form.other_hospitals.checked) p.set("other_hospitals", "true");
    location.hash = `#/search?${p}`;
  });
  const results = h("div", { testid: "search-results" }, t("viewer.loading"));
  root.replaceChildren(h("div", { class: "card" }, form), h("div", { class: "card" }, results));
  const params = new URLSearchParams({ limit: "50" });
  if (q) params.set("q", q);
  if (patientId) params.set("patient_id", patientId);
  if (modality) params.set("modality", modality);
  if (other) params.set("other_hospitals", "true");
  const data = await api(`/api/exams?${params}`);
  results.replaceChildren(h("div", { class: "muted", testid: "search-total" }, t("search.total", { n: data.total })),
    data.items.length ? examTable(data.items) : h("p", {}, t("search.none")));
}

// ------------------------------------------------------------------------------- patient
function otherHospitalsFirst(items) {
  // Other hospitals' exams are what a recognition decision is about: first, newest first.
  return [...items].sort((a, b) => (a.own_hospital - b.own_hospital)
    || (new Date(b.exam_time || 0) - new Date(a.exam_time || 0)));
}

async function renderPatient(patientId, query) {
  const root = content();
  root.replaceChildren(h("div", { class: "card" }, t("viewer.loading")));
  state.orderedItem = query.get("item") || null;
  const data = await api(`/api/patients/${encodeURIComponent(patientId)}/exams`);
  const p = data.patient || {};
  const items = otherHospitalsFirst(data.items || []);
  const head = h("div", { class: "card", testid: "patient-header" },
    h("h1", {}, t("patient.title")),
    h("div", {}, [p.name, p.sex, p.birth_year].filter(Boolean).join(" · ") || `#${patientId}`),
    h("div", { class: "muted" }, t("patient.other_first")));
  const list = h("div", { class: "card", testid: "patient-exams" },
    items.length ? examTable(items, { showPatient: false }) : h("div", { class: "notice refused", testid: "refusal" }, t("patient.none")));
  const known = new Map();
  for (const ex of items) for (const it of ex.items || []) if (it.code) known.set(it.code, it.name || it.code);
  const repeat = repeatCheckCard(patientId, query.get("item") || "", known);
  root.replaceChildren(head, repeat, list);
}

function repeatCheckCard(patientId, item, known) {
  const result = h("div", { testid: "repeat-result" });
  // the codes of the items this patient already had, as suggestions (any code may be typed)
  const options = h("datalist", { id: "repeat-items" }, [...known].map(([code, name]) => h("option", { value: code }, name)));
  const form = h("form", { class: "searchbar", testid: "repeat-form" },
    h("strong", {}, t("repeat.title")),
    h("input", { name: "item", value: item, placeholder: t("repeat.item"), testid: "repeat-item", size: 18, list: "repeat-items" }),
    options,
    h("input", { name: "window_days", type: "number", min: "1", max: "3650", placeholder: t("repeat.window"),
      testid: "repeat-window", class: "narrow" }),
    h("button", { type: "submit", testid: "repeat-submit" }, t("repeat.check")));
  const run = async (code) => {
    result.replaceChildren(t("viewer.loading"));
    const params = new URLSearchParams({ item: code });
    if (form.window_days.value) params.set("window_days", form.window_days.value);
    try {
      const data = await api(`/api/patients/${encodeURIComponent(patientId)}/repeat-check?${params}`);
      const name = data.item ? (data.item.name || data.item.code) : code;
      result.replaceChildren(data.items.length
        ? h("div", { class: "notice", testid: "repeat-found" }, t("repeat.found", { n: data.items.length, days: data.window_days, item: name }),
          examTable(otherHospitalsFirst(data.items), { showPatient: false }))
        : h("p", { class: "muted", testid: "repeat-none" }, t("repeat.none", { days: data.window_days })));
      state.orderedItem = code;
    } catch (e) {
      result.replaceChildren(h("span", { class: "error" }, e.message));
    }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); if (form.item.value.trim()) run(form.item.value.trim()); });
  if (item) run(item);
  return h("div", { class: "card" }, form, result);
}

// ---------------------------------------------------------------------------------- exam
async function ensureReasons() {
  if (!state.reasons) state.reasons = (await api("/api/recognition/reasons")).reasons;
  return state.reasons;
}

async function renderExam(examId, query) {
  const root = content();
  stopViewer();
  performance.clearMarks("radqc:exam-open");
  performance.clearMarks("radqc:first-image");
  performance.clearMarks("radqc:stack-loaded");
  performance.mark("radqc:exam-open");
  root.replaceChildren(h("div", { class: "card" }, t("viewer.loading")));
  const exam = await api(`/api/exams/${encodeURIComponent(examId)}`);
  state.exam = exam;
  if (query.get("item")) state.orderedItem = query.get("item");
  ensureReasons().catch(() => {});
  const qc = exam.qc || {};
  const head = h("div", { class: "exam-head", testid: "exam-header" },
    h("button", { type: "button", testid: "exam-back",
      onclick: () => { if (exam.patient) location.hash = `#/patient/${exam.patient.id}`; else history.back(); } }, `← ${t("exam.back")}`),
    gradeBadge(qc.grade, "exam-grade"),
    h("span", { testid: "exam-score-head" }, `${t("qc.score")} ${fmtScore(qc.score)}`),
    h("strong", {}, exam.description || exam.modality || ""),
    exam.items && exam.items.length ? h("span", { class: "muted", testid: "exam-items" },
      exam.items.map((i) => i.name || i.code).join("、")) : null,
    h("span", {}, exam.hospital?.name || exam.hospital?.code || ""),
    h("span", { class: `tag${exam.own_hospital ? "" : " other"}` }, exam.own_hospital ? t("own_hospital") : t("other_hospital")),
    h("span", { class: "muted" }, fmtTime(exam.exam_time)),
    exam.accession_number ? h("span", { class: "muted" }, exam.accession_number) : null,
    exam.patient ? h("a", { href: `#/patient/${exam.patient.id}`, testid: "exam-patient" },
      `${t("patient.open")} ${exam.patient.name || "#" + exam.patient.id}`) : null);
  const thumbs = h("div", { class: "thumbs", testid: "thumbnails" });
  const viewerEl = buildViewerDom();
  const side = h("div", { class: "side", testid: "side-panel" },
    recognitionSection(exam), qcSection(exam), reportSection(exam));
  root.replaceChildren(h("div", { class: "exam", testid: "exam-view", dataset: { examId: exam.id } }, head, thumbs, viewerEl.root, side));
  const series = (exam.series || []).filter((s) => s.instances > 0);
  for (const s of series) {
    const btn = h("button", { type: "button", class: "thumb", testid: "series-thumb", dataset: { seriesId: s.id },
      title: s.description || "" },
      authImage(s.thumbnail_url || `/api/series/${s.id}/thumbnail`, {}),
      `${s.series_number ?? ""} ${s.description || s.modality || ""} (${s.instances})`);
    btn.addEventListener("click", () => openSeries(s.id, 0));
    thumbs.append(btn);
  }
  // open the longest series (the diagnostic stack, not a one-image localizer)
  const longest = series.reduce((best, s) => (s.instances > best.instances ? s : best), series[0] || null);
  if (longest) await openSeries(longest.id, 0);
  else viewerEl.status.textContent = t("viewer.no_series");
}

function reportSection(exam) {
  const r = exam.report;
  return h("section", { class: "report", testid: "report" }, h("h2", {}, t("exam.report")),
    r ? [h("h3", {}, t("exam.findings")), h("p", {}, r.findings || ""), h("h3", {}, t("exam.impression")),
      h("p", {}, r.impression || ""), h("p", { class: "muted" }, [r.report_doctor, fmtTime(r.report_time)].filter(Boolean).join(" · "))]
      : h("p", { class: "muted" }, t("exam.no_report")));
}

function dimClass(value) {
  if (value === null || value === undefined || NA_VALUES.has(value)) return "na";
  return NORMAL_VALUES.has(value) ? "normal" : "abnormal";
}

function qcSection(exam) {
  const iq = exam.image_qc;
  const qc = exam.qc || iq || {};
  const sec = h("section", { testid: "qc-panel" }, h("h2", {}, t("qc.title")));
  sec.append(h("div", {}, gradeBadge(qc.grade, "qc-grade"), " ",
    h("span", { testid: "qc-score" }, `${t("qc.score")} ${fmtScore(qc.score)}`),
    qc.image_score !== undefined && qc.image_score !== null
      ? h("span", { class: "muted" }, ` · ${t("qc.image")} ${fmtScore(qc.image_score)} (${qc.image_grade ?? "—"})`) : null,
    exam.rule_qc && exam.rule_qc.score !== undefined
      ? h("span", { class: "muted" }, ` · ${t("qc.rule")} ${fmtScore(exam.rule_qc.score)}`) : null,
    qc.standard ? h("div", { class: "muted" }, `${t("qc.standard")}: ${qc.standard}`) : null));
  if (!iq) { sec.append(h("p", { class: "muted", testid: "qc-none" }, t("qc.none"))); return sec; }
  const dims = h("div", { class: "dims", testid: "qc-dimensions" });
  const names = [...DIMENSIONS, ...Object.keys(iq.dimensions || {}).filter((d) => !DIMENSIONS.includes(d))];
  for (const dim of names) {
    const d = (iq.dimensions || {})[dim];
    if (!d) continue;
    const reason = d.reason ? (typeof d.reason === "object" ? bi(d.reason.zh, d.reason.en) : String(d.reason)) : "";
    dims.append(h("span", {}, t(`dim.${dim}`) === `dim.${dim}` ? dim : t(`dim.${dim}`)),
      h("span", { class: `dim-value ${dimClass(d.value)}`, testid: `qc-dim-${dim}`, dataset: { dimension: dim, value: d.value ?? "" },
        title: reason }, valueText(d.value), reason && dimClass(d.value) !== "normal" ? h("span", { class: "muted" }, ` ${reason}`) : null));
  }
  sec.append(h("h3", {}, t("qc.dimensions")), dims, h("h3", {}, t("qc.deductions")));
  const deductions = iq.deductions || [];
  if (!deductions.length) sec.append(h("p", { class: "muted", testid: "qc-no-deductions" }, t("qc.no_deductions")));
  deductions.forEach((ded, n) => {
    const ev = (ded.evidence || []).filter((e) => e.image_url);
    sec.append(h("div", { class: "deduction", testid: "qc-deduction", dataset: { checkId: ded.check_id || "", dimension: ded.dimension || "" } },
      h("span", { class: "points" }, t("qc.points", { p: ded.points })),
      h("div", {}, h("strong", {}, t(`dim.${ded.dimension}`) === `dim.${ded.dimension}` ? (ded.dimension || ded.check_id) : t(`dim.${ded.dimension}`)),
        ` ${ded.value ? valueText(ded.value) : ""}`),
      h("div", { testid: "qc-deduction-reason" }, bi(ded.reason_zh, ded.reason_en)),
      ev.length ? h("div", { class: "evidence", title: t("qc.evidence") }, ev.map((e) => {
        const b = h("button", { type: "button", testid: "evidence-thumb",
          dataset: { seriesId: e.series_id ?? "", seriesUid: e.series_uid ?? "", instanceIndex: e.instance_index ?? "", deduction: n } },
        authImage(e.image_url, {}));
        b.addEventListener("click", () => jumpToEvidence(e));
        return b;
      })) : null));
  });
  return sec;
}

function jumpToEvidence(e) {
  const exam = state.exam;
  let seriesId = e.series_id;
  if (seriesId === null || seriesId === undefined) {
    const s = (exam.series || []).find((x) => x.series_instance_uid === e.series_uid);
    seriesId = s ? s.id : null;
  }
  if (seriesId === null || seriesId === undefined) return;
  const index = Number.isInteger(e.instance_index) ? e.instance_index : 0;
  if (viewer && viewer.seriesId === seriesId) setIndex(index);
  else openSeries(seriesId, index);
}

// --------------------------------------------------------------------------- recognition
function recognitionSection(exam) {
  const sec = h("section", { testid: "recognition-panel" }, h("h2", {}, t("rec.title")));
  const label = h("div", { testid: "recognition-status" }, recognitionLabel(exam.recognition));
  sec.append(label);
  if (exam.own_hospital) {
    sec.append(h("p", { class: "muted" }, t("rec.own_hospital")));
  } else if (exam.permissions && exam.permissions.recognise) {
    const accept = h("button", { type: "button", class: "ok", testid: "recognise-accept" }, t("rec.accept"));
    const reject = h("button", { type: "button", class: "danger", testid: "recognise-reject" }, t("rec.reject"));
    accept.addEventListener("click", () => submitRecognition(exam, { decision: "互认", reason_code: null, comment: null }, label));
    reject.addEventListener("click", () => openRejectDialog(exam, label));
    sec.append(h("div", { class: "rec-buttons" }, accept, reject));
  }
  const history = h("ul", { testid: "recognition-history" });
  for (const r of exam.recognitions || []) history.append(recognitionItem(r));
  sec.append(h("details", {}, h("summary", {}, t("rec.history")), history));
  return sec;
}

function recognitionItem(r) {
  const who = r.by ? `${r.by.display_name || r.by.username}${r.by.hospital ? " @" + r.by.hospital : ""}` : "";
  return h("li", {}, recognitionLabel(r), " ", h("span", { class: "muted" }, t("rec.by", { who, at: fmtTime(r.at) })),
    r.comment ? h("div", { class: "muted" }, r.comment) : null);
}

async function submitRecognition(exam, body, label) {
  const payload = { ...body, ordered_item: state.orderedItem || null };
  const rec = await api(`/api/exams/${exam.id}/recognition`, { method: "POST", json: payload });
  label.replaceChildren(recognitionLabel(rec));
  const history = document.querySelector('[data-testid="recognition-history"]');
  if (history) history.prepend(recognitionItem(rec));
  return rec;
}

async function openRejectDialog(exam, label) {
  const dialog = document.getElementById("reject-dialog");
  const holder = document.getElementById("reject-reasons");
  const error = document.getElementById("reject-error");
  error.hidden = true;
  applyStaticText();
  const reasons = await ensureReasons();
  holder.replaceChildren();
  for (const category of ["quality", "clinical"]) {
    const fs = h("fieldset", { testid: `reasons-${category}` }, h("legend", {}, t(`rec.${category}`)));
    for (const r of reasons.filter((x) => x.category === category)) {
      fs.append(h("label", {}, h("input", { type: "radio", name: "reason", value: r.code, testid: `reason-${r.code}` }),
        " ", bi(r.zh, r.en)));
    }
    holder.append(fs);
  }
  document.getElementById("reject-comment").value = "";
  const confirm = document.getElementById("reject-confirm");
  const cancel = document.getElementById("reject-cancel");
  const onConfirm = async () => {
    const chosen = holder.querySelector('input[name="reason"]:checked');
    if (!chosen) { error.textContent = t("rec.choose"); error.hidden = false; return; }
    try {
      await submitRecognition(exam, { decision: "不互认", reason_code: chosen.value,
        comment: document.getElementById("reject-comment").value.trim() || null }, label);
      close();
    } catch (e) { error.textContent = e.message; error.hidden = false; }
  };
  const close = () => {
    confirm.removeEventListener("click", onConfirm);
    cancel.removeEventListener("click", close);
    dialog.close();
  };
  confirm.addEventListener("click", onConfirm);
  cancel.addEventListener("click", close);
  dialog.showModal();
}

// -------------------------------------------------------------------------------- viewer
let viewer = null;

function buildViewerDom() {
  const canvas = h("canvas", { testid: "viewer-canvas", tabindex: "0" });
  const tl = h("div", { class: "overlay tl", testid: "viewer-overlay" });
  const tr = h("div", { class: "overlay tr", testid: "viewer-info" });
  const bl = h("div", { class: "overlay bl", testid: "viewer-status" });
  const presets = h("span", { testid: "preset-buttons" });
  const slider = h("input", { type: "range", class: "slice-range", min: "0", max: "0", value: "0", testid: "slice-slider" });
  const btn = (key, testid, fn) => { const b = h("button", { type: "button", testid }, t(key)); b.addEventListener("click", fn); return b; };
  const panBtn = btn("viewer.pan", "tool-pan", () => { viewer.panMode = !viewer.panMode; panBtn.classList.toggle("active", viewer.panMode); });
  const infoBtn = btn("viewer.info", "tool-info", () => { tr.hidden = !tr.hidden; });
  const toolbar = h("div", { class: "toolbar", testid: "viewer-toolbar" },
    btn("viewer.zoom_in", "zoom-in", () => zoomBy(1.25)), btn("viewer.zoom_out", "zoom-out", () => zoomBy(0.8)),
    btn("viewer.reset", "view-reset", () => { viewer.zoom = 1; viewer.pan = { x: 0, y: 0 }; draw(); }),
    panBtn, infoBtn, h("span", {}, " | ", t("viewer.window"), ": "), presets,
    h("span", { class: "muted help", title: t("viewer.help"), testid: "viewer-help" }, ` ${t("viewer.help_short")}`));
  const wrap = h("div", { class: "canvas-wrap" }, canvas, tl, tr, bl);
  const root = h("div", { class: "viewer", testid: "viewer" }, toolbar, wrap, slider);
  viewer = {
    root, canvas, wrap, overlay: tl, info: tr, status: bl, presets, slider, panBtn,
    seriesId: null, stack: null, index: 0, frames: [], frameWindows: [], window: null, zoom: 1, pan: { x: 0, y: 0 },
    generation: 0, loaded: 0, panMode: false, firstDrawn: false, drag: null, previewWindow: null, abort: null,
  };
  attachViewerEvents(viewer);
  new ResizeObserver(() => draw()).observe(wrap);
  publishViewer();
  return viewer;
}

function stopViewer() {
  if (viewer && viewer.onKey) document.removeEventListener("keydown", viewer.onKey);
  if (viewer && viewer.abort) viewer.abort.abort();
  if (viewer) for (const f of viewer.frames) if (f) f.close();
  viewer = null;
  window.radqcViewer = { seriesId: null, index: 0, count: 0, loaded: 0, window: null };
}

function publishViewer() {
  if (!viewer) return;
  const w = viewer.previewWindow || viewer.window;
  window.radqcViewer = { seriesId: viewer.seriesId, index: viewer.index, count: viewer.stack ? viewer.stack.instances.length : 0,
    loaded: viewer.loaded, decoded: viewer.bitmaps || 0, window: w ? { center: w.center, width: w.width } : null,
    zoom: viewer.zoom,
    // the window the frame on screen was rendered at by the server ("center,width"; "" = default)
    drawnWindow: viewer.frames[viewer.index] ? viewer.frameWindows[viewer.index] : null };
  viewer.root.dataset.index = String(viewer.index);
  viewer.root.dataset.seriesId = String(viewer.seriesId ?? "");
  viewer.root.dataset.loaded = String(viewer.loaded);
  viewer.root.dataset.window = w ? `${w.center},${w.width}` : "";
}

async function openSeries(seriesId, index) {
  if (!viewer) return;
  const v = viewer;
  for (const b of document.querySelectorAll('[data-testid="series-thumb"]')) b.classList.toggle("selected", b.dataset.seriesId === String(seriesId));
  v.seriesId = seriesId;
  v.status.textContent = t("viewer.loading");
  let stack;
  try {
    stack = await api(`/api/series/${seriesId}/stack`);
  } catch (e) {
    // a series that cannot be shown must not take the QC panel and the decision away
    if (viewer === v) v.status.textContent = `${t("error")}: ${e.message}`;
    return;
  }
  if (viewer !== v || v.seriesId !== seriesId) return;
  v.stack = stack;
  for (const f of v.frames) if (f) f.close();
  v.frames = new Array(stack.instances.length).fill(null);
  v.blobs = new Array(stack.instances.length).fill(null);
  v.frameWindows = new Array(stack.instances.length).fill(null);
  v.bitmaps = 0;
  const budget = Number(window.RADQC_BITMAP_BUDGET) || BITMAP_BUDGET_BYTES;  // tests lower it
  v.maxBitmaps = Math.max(16, Math.floor(budget / (4 * (stack.rows || 512) * (stack.columns || 512))));
  v.index = Math.max(0, Math.min(index || 0, stack.instances.length - 1));
  v.zoom = 1; v.pan = { x: 0, y: 0 };
  v.window = stack.default_window && stack.default_window.center !== null && stack.default_window.center !== undefined
    ? { center: Number(stack.default_window.center), width: Number(stack.default_window.width) } : null;
  v.defaultWindow = v.window ? { ...v.window } : null;
  v.slider.max = String(Math.max(0, stack.instances.length - 1));
  v.slider.value = String(v.index);
  renderPresets(v);
  renderInfo(v);
  publishViewer();
  loadFrames(v);
}

function renderPresets(v) {
  const presets = v.stack.presets || {};
  const buttons = [];
  if (v.defaultWindow) {
    const b = h("button", { type: "button", testid: "preset-default" }, t("viewer.default"));
    b.addEventListener("click", () => setWindow({ ...v.defaultWindow }));
    buttons.push(b);
  }
  for (const [name, p] of Object.entries(presets)) {
    const b = h("button", { type: "button", testid: `preset-${name}`, dataset: { center: p.center, width: p.width } },
      bi(p.zh, p.en) || name);
    b.addEventListener("click", () => setWindow({ center: Number(p.center), width: Number(p.width) }));
    buttons.push(b);
  }
  v.presets.replaceChildren(...buttons);
}

function renderInfo(v) {
  const s = v.stack;
  const lines = [];
  for (const [k, val] of Object.entries(s.dicom_info || {})) {
    if (val === null || val === undefined || val === "") continue;
    lines.push(`${k}: ${Array.isArray(val) ? val.join("\\") : val}`);
  }
  if (s.pixel_spacing) lines.push(`PixelSpacing: ${[].concat(s.pixel_spacing).map((x) => Number(x).toFixed(3)).join("\\")}`);
  if (s.slice_thickness) lines.push(`SliceThickness: ${s.slice_thickness}`);
  v.info.textContent = lines.join("\n");
}

function frameUrl(v, i, w) {
  const inst = v.stack.instances[i];
  const base = inst.rendered_url || `/api/instances/${inst.instance_id}/rendered`;
  return w ? `${base}${base.includes("?") ? "&" : "?"}window=${encodeURIComponent(`${w.center},${w.width}`)}` : base;
}

/** Fetch and decode every frame at the current window, the current slice first, a few at a time. */
function loadFrames(v) {
  if (v.abort) v.abort.abort();
  const controller = new AbortController();
  v.abort = controller;
  const generation = ++v.generation;
  const w = v.window ? { ...v.window } : null;
  const key = w ? `${w.center},${w.width}` : "";
  const n = v.stack.instances.length;
  // Each request takes the missing slice nearest to the one on screen *now*: the current slice
  // first, then outwards, following the doctor if they scroll while the stack loads.
  const pending = new Set();
  for (let i = 0; i < n; i++) if (v.frameWindows[i] !== key) pending.add(i);
  v.loaded = n - pending.size;
  const nearest = () => {
    let best = -1;
    for (const i of pending) if (best < 0 || Math.abs(i - v.index) < Math.abs(best - v.index)) best = i;
    pending.delete(best);
    return best;
  };
  const worker = async () => {
    while (pending.size > 0) {
      const i = nearest();
      if (controller.signal.aborted || v.generation !== generation) return;
      try {
        const blob = await apiBlob(frameUrl(v, i, w), controller.signal);
        const bitmap = await createImageBitmap(blob);
        if (v.generation !== generation || viewer !== v) { bitmap.close(); return; }
        v.blobs[i] = blob;
        v.frameWindows[i] = key;
        storeBitmap(v, i, bitmap);
        v.loaded++;
        if (i === v.index) draw();
        scheduleStatus(v);
      } catch (e) {
        if (controller.signal.aborted) return;
        v.status.textContent = `${t("error")}: ${e.message}`;
      }
    }
  };
  updateStatus(v);
  Promise.all(Array.from({ length: Math.min(PREFETCH_CONCURRENCY, Math.max(1, pending.size)) }, worker)).then(() => {
    if (v.generation === generation && viewer === v && v.loaded === n) {
      performance.clearMarks("radqc:stack-loaded");
      performance.mark("radqc:stack-loaded");
      updateStatus(v);
      publishViewer();
      draw();
    }
  });
}

/** Keep a decoded frame; past the memory budget, drop the decoded frame farthest from the current slice. */
function storeBitmap(v, i, bitmap) {
  if (v.frames[i]) { v.frames[i].close(); v.bitmaps--; }
  v.frames[i] = bitmap;
  v.bitmaps++;
  while (v.bitmaps > v.maxBitmaps) {
    let far = -1;  // possibly the new frame itself: its blob stays, it is decoded again when needed
    for (let k = 0; k < v.frames.length; k++) {
      if (v.frames[k] && (far < 0 || Math.abs(k - v.index) > Math.abs(far - v.index))) far = k;
    }
    v.frames[far].close();
    v.frames[far] = null;
    v.bitmaps--;
  }
}

/** Decode a fetched-but-dropped frame (and its neighbours) when the doctor scrolls to it. */
function decodeAround(v, centre) {
  for (let d = 0; d <= 4; d++) {
    for (const i of d === 0 ? [centre] : [centre + d, centre - d]) {
      if (i < 0 || i >= v.frames.length || v.frames[i] || !v.blobs[i] || v.decoding?.has(i)) continue;
      v.decoding = v.decoding || new Set();
      v.decoding.add(i);
      const key = v.frameWindows[i];
      createImageBitmap(v.blobs[i]).then((bitmap) => {
        v.decoding.delete(i);
        if (viewer !== v || v.frameWindows[i] !== key || v.frames[i]) { bitmap.close(); return; }
        storeBitmap(v, i, bitmap);
        if (i === v.index) { draw(); publishViewer(); }
      }).catch(() => v.decoding.delete(i));
    }
  }
}

/** Progress text and window.radqcViewer at most once per animation frame (not once per slice). */
function scheduleStatus(v) {
  if (v.statusPending) return;
  v.statusPending = true;
  requestAnimationFrame(() => {
    v.statusPending = false;
    if (viewer !== v) return;
    updateStatus(v);
    publishViewer();
  });
}

function updateStatus(v) {
  const n = v.stack ? v.stack.instances.length : 0;
  v.status.textContent = t("viewer.loaded", { n: v.loaded, total: n });
}

function setIndex(i) {
  const v = viewer;
  if (!v || !v.stack) return;
  const n = v.stack.instances.length;
  const next = Math.max(0, Math.min(n - 1, i));
  if (next === v.index) return;
  v.index = next;
  v.slider.value = String(next);
  draw();
  publishViewer();
}

function setWindow(w) {
  const v = viewer;
  if (!v || !v.stack) return;
  v.window = { center: Math.round(w.center), width: Math.max(1, Math.round(w.width)) };
  v.previewWindow = null;
  loadFrames(v);  // resets the loaded count before anyone reads it
  publishViewer();
  draw();
}

function zoomBy(factor) {
  const v = viewer;
  if (!v) return;
  v.zoom = Math.max(0.25, Math.min(16, v.zoom * factor));
  draw();
  publishViewer();
}

/** The SVG filter that maps a frame windowed at `from` to what window `to` would show. */
function previewFilter(from, to) {
  if (!from || !to || (from.center === to.center && from.width === to.width)) return "none";
  const slope = from.width / to.width;
  const intercept = (from.center - to.center) / to.width + 0.5 - 0.5 * slope;
  for (const f of document.querySelectorAll("#wl-filter feFuncR, #wl-filter feFuncG, #wl-filter feFuncB")) {
    f.setAttribute("slope", String(slope));
    f.setAttribute("intercept", String(intercept));
  }
  return "url(#wl-filter)";
}

function draw() {
  const v = viewer;
  if (!v) return;
  const canvas = v.canvas;
  const rect = v.wrap.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const cw = Math.max(1, Math.round(rect.width * dpr));
  const ch = Math.max(1, Math.round(rect.height * dpr));
  if (canvas.width !== cw || canvas.height !== ch) { canvas.width = cw; canvas.height = ch; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, cw, ch);
  const frame = v.frames[v.index];
  if (!frame && v.blobs && v.blobs[v.index]) decodeAround(v, v.index);
  if (frame) {
    const scale = Math.min(cw / frame.width, ch / frame.height) * v.zoom;
    const dw = frame.width * scale;
    const dh = frame.height * scale;
    const x = (cw - dw) / 2 + v.pan.x * dpr;
    const y = (ch - dh) / 2 + v.pan.y * dpr;
    const fw = v.frameWindows[v.index];
    const from = fw ? { center: Number(fw.split(",")[0]), width: Number(fw.split(",")[1]) } : null;
    const target = v.previewWindow || v.window;
    ctx.filter = previewFilter(from, target);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(frame, x, y, dw, dh);
    ctx.filter = "none";
    if (!v.firstDrawn) {
      v.firstDrawn = true;
      performance.mark("radqc:first-image");
    }
  }
  const n = v.stack ? v.stack.instances.length : 0;
  const w = v.previewWindow || v.window;
  const s = v.stack || {};
  v.overlay.textContent = [
    `${s.modality || ""} ${s.description || ""}`.trim(),
    `${t("viewer.slice")} ${n ? v.index + 1 : 0}/${n}${s.instances && s.instances[v.index] && s.instances[v.index].z !== null && s.instances[v.index].z !== undefined ? `  z=${Number(s.instances[v.index].z).toFixed(1)}` : ""}`,
    w ? `C ${w.center}  W ${w.width}` : "",
    `×${v.zoom.toFixed(2)}`,
  ].filter(Boolean).join("\n");
  v.overlay.dataset.index = String(v.index);
}

function attachViewerEvents(v) {
  const canvas = v.canvas;
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (e.ctrlKey) zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15);
    else setIndex(v.index + (e.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerdown", (e) => {
    canvas.focus();
    canvas.setPointerCapture(e.pointerId);
    const pan = v.panMode || e.shiftKey || e.button === 1 || e.button === 2;
    v.drag = { x: e.clientX, y: e.clientY, pan, start: { ...v.pan }, window: v.window ? { ...v.window } : null };
  });
  canvas.addEventListener("pointermove", (e) => {
    const d = v.drag;
    if (!d) return;
    const dx = e.clientX - d.x;
    const dy = e.clientY - d.y;
    if (d.pan) {
      v.pan = { x: d.start.x + dx, y: d.start.y + dy };
    } else if (d.window) {
      // horizontal: width, vertical: level (the radiology convention), scaled to the window
      const k = Math.max(1, d.window.width) / 256;
      v.previewWindow = { center: Math.round(d.window.center + dy * k), width: Math.max(1, Math.round(d.window.width + dx * k * 2)) };
      publishViewer();
    }
    draw();
  });
  const end = () => {
    const d = v.drag;
    v.drag = null;
    if (d && !d.pan && v.previewWindow) setWindow(v.previewWindow);
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  v.onKey = (e) => {
    if (viewer !== v || e.defaultPrevented || e.altKey || e.metaKey) return;
    const target = e.target;
    if (target && (target.closest("input, textarea, select, dialog") || target.isContentEditable)) return;
    if (e.key === "ArrowDown" || e.key === "ArrowRight" || e.key === "PageDown") { setIndex(v.index + 1); e.preventDefault(); }
    else if (e.key === "ArrowUp" || e.key === "ArrowLeft" || e.key === "PageUp") { setIndex(v.index - 1); e.preventDefault(); }
    else if (e.key === "Home") { setIndex(0); e.preventDefault(); }
    else if (e.key === "End") { setIndex(Number.MAX_SAFE_INTEGER); e.preventDefault(); }
    else if (e.key === "+" || e.key === "=") zoomBy(1.25);
    else if (e.key === "-") zoomBy(0.8);
  };
  document.addEventListener("keydown", v.onKey);
  v.slider.addEventListener("input", () => setIndex(Number(v.slider.value)));
}

// --------------------------------------------------------------------------------- stats
function barChart(rows, valueKey, labelKey, { max = null, format = (x) => String(x), testid } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const data = rows.map((r) => ({ label: String(r[labelKey] ?? ""), value: Number(r[valueKey] ?? 0) }));
  const top = max ?? Math.max(1, ...data.map((d) => d.value));
  const barH = 22;
  const width = 520;
  const labelW = 150;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${Math.max(1, data.length) * (barH + 6) + 6}`);
  svg.setAttribute("class", "chart");
  if (testid) svg.dataset.testid = testid;
  data.forEach((d, i) => {
    const y = 6 + i * (barH + 6);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "0"); label.setAttribute("y", String(y + 15)); label.setAttribute("font-size", "12");
    label.textContent = d.label.length > 20 ? d.label.slice(0, 19) + "…" : d.label;
    const rect = document.createElementNS(ns, "rect");
    const w = Math.max(0, (width - labelW - 60) * (d.value / top));
    rect.setAttribute("x", String(labelW)); rect.setAttribute("y", String(y));
    rect.setAttribute("width", String(w)); rect.setAttribute("height", String(barH)); rect.setAttribute("fill", "#1565c0");
    rect.dataset.value = String(d.value);
    const val = document.createElementNS(ns, "text");
    val.setAttribute("x", String(labelW + w + 4)); val.setAttribute("y", String(y + 15)); val.setAttribute("font-size", "12");
    val.textContent = format(d.value);
    svg.append(label, rect, val);
  });
  return svg;
}

async function downloadCsv(path, filename) {
  const blob = await apiBlob(path);
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function renderStats(query) {
  const root = content();
  if (!can("stats.read")) { renderError(new ApiError(403, "")); return; }
  const by = query.get("by") || "hospital";
  const qcBy = query.get("qc_by") || "hospital";
  const select = h("select", { testid: "stats-by" },
    ["hospital", "item", "reason", "month", "doctor_hospital"].map((k) => h("option", { value: k, selected: k === by }, t(`stats.by.${k}`))));
  select.addEventListener("change", () => { location.hash = `#/stats?by=${select.value}&qc_by=${qcBy}`; });
  const recCard = h("div", { class: "card", testid: "stats-recognition" }, h("h2", {}, t("stats.recognition")),
    h("div", { class: "searchbar" }, t("stats.by"), select,
      can("stats.export") ? h("button", { type: "button", testid: "stats-csv",
        onclick: () => downloadCsv(`/api/stats/recognition?by=${by}&format=csv`, `recognition-${by}.csv`) }, t("stats.csv")) : null));
  const qcCard = h("div", { class: "card", testid: "stats-qc" }, h("h2", {}, t("stats.qc")),
    can("stats.export") ? h("button", { type: "button", testid: "stats-qc-csv",
      onclick: () => downloadCsv(`/api/stats/qc?by=${qcBy}&format=csv`, `qc-${qcBy}.csv`) }, t("stats.csv")) : null);
  root.replaceChildren(h("div", { class: "card" }, h("h1", {}, t("stats.title"))), h("div", { class: "stats-grid" }, recCard, qcCard));
  const [rec, qc] = await Promise.all([api(`/api/stats/recognition?by=${encodeURIComponent(by)}`),
    api(`/api/stats/qc?by=${encodeURIComponent(qcBy)}`), ensureReasons().catch(() => null)]);
  const recRows = rec.rows || [];
  if (!recRows.length) recCard.append(h("p", { class: "muted" }, t("stats.empty")));
  else {
    recCard.append(barChart(recRows.map((r) => ({ ...r, name: r.label || r.key })), "not_recognised_quality", "name",
      { testid: "stats-chart" }));
    recCard.append(h("table", { testid: "stats-recognition-table" },
      h("thead", {}, h("tr", {}, [by, "decisions", "recognised", "not_recognised", "not_recognised_quality", "not_recognised_clinical", "rate", "reasons"]
        .map((k) => h("th", {}, k === by ? t(`stats.by.${by}`) : t(`stats.${k}`))))),
      h("tbody", {}, recRows.map((r) => h("tr", { testid: "stats-row", dataset: { key: r.key ?? "" } },
        h("td", {}, r.label || r.key || ""), h("td", { testid: "stats-decisions" }, r.decisions),
        h("td", { testid: "stats-recognised" }, r.recognised), h("td", { testid: "stats-not-recognised" }, r.not_recognised),
        h("td", { testid: "stats-not-recognised-quality" }, r.not_recognised_quality),
        h("td", {}, r.not_recognised_clinical),
        h("td", {}, r.recognition_rate === null || r.recognition_rate === undefined ? "—" : `${(100 * r.recognition_rate).toFixed(0)}%`),
        h("td", { testid: "stats-reasons" }, Object.entries(r.reasons || {}).map(([c, n]) => `${reasonText(c)} ${n}`).join("；")))))));
  }
  const qcRows = qc.rows || [];
  if (!qcRows.length) qcCard.append(h("p", { class: "muted" }, t("stats.empty")));
  else {
    qcCard.append(barChart(qcRows.map((r) => ({ ...r, name: r.key })), "mean_score", "name",
      { max: 100, format: (x) => x.toFixed(1), testid: "stats-qc-chart" }));
    qcCard.append(h("table", { testid: "stats-qc-table" },
      h("thead", {}, h("tr", {}, h("th", {}, t(`stats.by.${qcBy}`) === `stats.by.${qcBy}` ? qcBy : t(`stats.by.${qcBy}`)),
        h("th", {}, t("stats.exams")), h("th", {}, t("stats.mean_score")), h("th", {}, t("stats.grades")))),
      h("tbody", {}, qcRows.map((r) => h("tr", { testid: "stats-qc-row", dataset: { key: r.key ?? "" } },
        h("td", {}, r.key ?? ""), h("td", {}, r.exams), h("td", {}, r.mean_score === null || r.mean_score === undefined ? "—" : Number(r.mean_score).toFixed(1)),
        h("td", {}, Object.entries(r.grades || {}).map(([g, n]) => h("span", {}, gradeBadge(g), ` ${n}  `))))))));
  }
}

// ---------------------------------------------------------------------------------- boot
async function boot() {
  // /app/exam/5 (a link from another system) -> #/exam/5: the page routes on the hash
  const deep = location.pathname.match(/^\/app\/(.+)$/);
  if (deep && !location.hash) history.replaceState(null, "", `/#/${deep[1]}${location.search}`);
  await loadMessages();
  document.getElementById("login-form").addEventListener("submit", login);
  document.getElementById("logout").addEventListener("click", logout);
  document.getElementById("lang-switch").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem(LANG_KEY, state.lang);
    route();
  });
  window.addEventListener("hashchange", route);
  window.radqcViewer = { seriesId: null, index: 0, count: 0, loaded: 0, window: null };
  await route();
  document.body.dataset.ready = "1";
}

boot();
