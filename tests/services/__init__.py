"""Real services the tests run against (PostgreSQL, Orthanc), started on loopback by fixtures."""
