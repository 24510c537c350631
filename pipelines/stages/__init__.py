"""Pipeline stages. Each module exposes ``STAGES = [Stage(...)]``; the default registry
collects them all (a new stage is a new module here). Module level imports stay light:
heavy libraries are imported inside the stage functions."""
