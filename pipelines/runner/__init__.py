"""The stage runner: ``stage`` (the contract), ``registry`` (the graph), ``local`` (in-process).

Nothing is imported here on purpose: importing the package, the registry or a stage module
must stay instant (no SQLAlchemy, numpy or torch). See docs/pipeline-runner.md.
"""
