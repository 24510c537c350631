"""The RadQC service (服务): REST API, DICOMweb, auth and roles, the access log, web pages.

``create_app`` (:mod:`radqc.serving.app`) builds the FastAPI application over one workspace;
``radqc serve`` runs it with uvicorn. The web layer reads the catalogue and calls services,
never a model directly. Security lives in :mod:`radqc.serving.security`; every route depends
on :func:`radqc.serving.security.deps.require`, which names the permission it needs.
"""
