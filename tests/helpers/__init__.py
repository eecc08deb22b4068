"""Tools the tests share: image files of every kind, seeded fuzz cases, the kill harness and
peak-memory measurement (tests/helpers/*.py)."""
