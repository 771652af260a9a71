
import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own WINNOW_HOME so nothing leaks between tests."""
    monkeypatch.setenv("WINNOW_HOME", str(tmp_path / "winnow-home"))
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread (and ``WINNOW_THREADS=1``) for a module that trains: on two busy cores,
    two spinning OpenMP threads run several times slower than one."""
    torch = pytest.importorskip("torch")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINNOW_THREADS", "1")
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(before)
