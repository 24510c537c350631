"""API routers, one module per area; each is included by :func:`radqc.serving.app.create_app`.

Adding a router: write ``router = APIRouter(prefix=..., tags=[...])`` in a new module, give
every route ``Depends(require("permission"))``, and add the module to ``ROUTERS`` in app.py.
"""
