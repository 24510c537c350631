"""Cohorts, de-identification, annotation round trip, dataset export, synthetic exams (``radqc.datasets``)."""
