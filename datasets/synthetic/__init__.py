"""The synthetic exam generator: realistic exams whose every defect and label is known.

``spec`` is the contract between the planner (``clinical``: identities, orders, charges,
reports, seeded violations) and the renderer (``imaging``: phantoms, DICOM, image defects).
"""
