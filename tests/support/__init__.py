"""Builders of test data and test servers (plain functions; the pytest fixtures are in tests/conftest.py)."""
