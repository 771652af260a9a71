import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One torch thread: the test machines are shared, and two spinning OpenMP threads on two busy
    cores run several times slower than one."""
    monkeypatch.setenv("WINNOW_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
