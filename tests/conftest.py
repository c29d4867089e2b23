"""Shared test helpers: where the third-party fixture files live."""

from pathlib import Path

import pytest

#: The NIR paper's data files, kept beside the repository (../shared) here and in CI.
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nir-paper"


@pytest.fixture
def nir_paper() -> Path:
    """The NIR paper fixture folder; tests that need it skip when it is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"NIR paper fixtures not found at {FIXTURES} (expected beside the repository, in ../shared)")
    return FIXTURES
