"""The rule engine, scoring standards and the rule library as data files (``radqc.qc_rules``)."""
