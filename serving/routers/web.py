"""The doctor's single-page UI (互认 view): the page and its static files.

The page carries no patient data: it is the same HTML for everyone, and every piece of data
is fetched by the script from the API with the bearer token kept in ``sessionStorage``.
So these routes need no permission and stay out of the OpenAPI schema (the route-enumeration
security test only looks at schema routes, all of which require a token).

The content-security policy set by ``create_app`` (``script-src 'self'``) forbids inline
scripts and handlers; everything the page runs is in ``serving/web/app.js``. Nothing is
fetched from the internet (no CDN): a hospital network usually has no route out.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

#: The static UI: index.html, app.js, style.css, i18n/{zh,en}.json.
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_PREFIX = "/static"

router = APIRouter(include_in_schema=False)


def _index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8")


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The page; client-side routes (#/patient/…, #/exam/…) are resolved by app.js."""
    return _index()


@router.get("/app", include_in_schema=False)
@router.get("/app/{path:path}", include_in_schema=False)
def app_page(path: str = "") -> FileResponse:
    """Deep links (/app/...) get the same page, so a bookmarked URL opens the UI, never a 404.

    ``path`` is not used to read any file: it only lets the route match.
    """
    return _index()


def mount(app: FastAPI) -> None:
    """Serve ``serving/web`` under /static (StaticFiles refuses paths outside the folder)."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=WEB_DIR, check_dir=True), name="web-static")
