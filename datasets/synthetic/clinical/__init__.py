"""Plans exams: identities, hospitals, item names, orders, charges, reports, seeded violations."""
