
import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own WINNOW_HOME so nothing leaks between tests."""
    monkeypatch.setenv("WINNOW_HOME", str(tmp_path / "winnow-home"))
    yield
