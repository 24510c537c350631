"""The FastAPI service: REST API, auth, access log, web pages (``radqc.serving``)."""
