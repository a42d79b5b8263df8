"""Builders of test data and test servers (plain functions; the pytest fixtures are in tests/conftest.py)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
