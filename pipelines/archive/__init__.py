"""Lossless archive compression of stored objects, and verification of what is stored.

``transcode`` (pure, one object), ``service`` (``radqc archive``: catalogue + object store),
``verify`` (``radqc verify``). See docs/archive.md for the rules.
"""
