"""Charge audit, expert two-level review and their statistics (``radqc.audit_platform``)."""
