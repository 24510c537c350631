"""Ingest and the pipeline stages, and the stage runner (``radqc.pipelines``)."""
