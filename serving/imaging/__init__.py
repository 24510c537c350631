"""Images for the service: decoded pixels (cached), window/level rendering, DICOM JSON.

Kept apart from the routers so the per-request work (cached decoded array -> window ->
encode) is plain functions that a benchmark can time without HTTP around them.
"""
