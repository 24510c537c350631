"""What the service does once per worker at start-up (serving/app.py lifespan)."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient


def test_startup_objects_are_frozen_out_of_the_garbage_collector(workspace) -> None:  # type: ignore[no-untyped-def]
    """A full collection over the loaded vocabularies and ORM took ~70 ms per worker: frozen at
    start-up, later collections walk only what requests created."""
    from radqc.serving.app import create_app

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(workspace)) as client:  # the context runs the lifespan
            assert gc.get_freeze_count() > 10_000
            assert client.get("/healthz").status_code == 200
    finally:
        gc.unfreeze()
