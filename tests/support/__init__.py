"""Builders of test data and test servers (plain functions; the pytest fixtures are in tests/conftest.py)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The shared real data beside the checkout (../shared/data/real: README there), never copied into it
REAL_DATA = REPO.parent / "shared" / "data" / "real"
INVESALIUS = REAL_DATA / "invesalius_head_ct" / "cranium_ct.nii.gz"  # GPL-2: tests only
