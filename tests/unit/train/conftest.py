import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every training unit test runs on one torch thread (see tests/conftest.py)."""
