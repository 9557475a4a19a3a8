"""Shared fixtures for the gflow correctness tests.

Everything is tiny (n ≲ 10 points, m ≲ 16 neurons) and seeded explicitly, so that the whole suite runs in
seconds on two CPU cores and every number is reproducible.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

F64_EPS = float(torch.finfo(torch.float64).eps)


def _make_data(n: int, d: int, seed: int, n_test: int = 0, scale: float = 1.0):
    """x ~ N(0, scale² I_d), y ~ U[-1/2, 1/2] from ``np.random.default_rng(seed)``.

    Returns (X, y) or, with ``n_test > 0``, (X, y, X_test, y_test); all float64 numpy arrays.
    """
    rng = np.random.default_rng(seed)
    X = scale * rng.standard_normal((n, d))
    y = rng.uniform(-0.5, 0.5, size=n)
    if n_test == 0:
        return X, y
    X_test = scale * rng.standard_normal((n_test, d))
    y_test = rng.uniform(-0.5, 0.5, size=n_test)
    return X, y, X_test, y_test


def _rel_err(a, b) -> float:
    """max |a − b| / max |b| (b is the reference); 0 when both vanish."""
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64)
    assert a.shape == b.shape, f"shape mismatch {a.shape} vs {b.shape}"
    scale = np.abs(b).max()
    diff = np.abs(a - b).max()
    return float(diff / scale) if scale > 0 else float(diff)


@pytest.fixture
def make_data():
    """Factory ``make_data(n, d, seed, n_test=0, scale=1.0)`` for small seeded regression data."""
    return _make_data


@pytest.fixture
def rel_err():
    """``rel_err(a, b)``: max-norm error of ``a`` relative to the reference ``b``."""
    return _rel_err


@pytest.fixture
def eps64() -> float:
    """float64 machine epsilon."""
    return F64_EPS


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The test problems are tiny: one intra-op thread is fastest, and immune to the 10-30x slowdowns that
    OpenMP thread oversubscription causes when other processes share the (2-core) machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _python_sigint_handler():
    """Python's own SIGINT handler, as in a terminal.  A shell starts a background job (``cmd &`` in a script, a
    CI runner's job) with SIGINT ignored, and Python then leaves it ignored: the Ctrl-C tests would see no
    KeyboardInterrupt, and the processes they start would inherit the ignored signal.  (A handler, unlike an
    ignored signal, is reset to the default in a started program.)"""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def exp3_tiny(tmp_path_factory):
    """(folder, result) of Experiment 3 at the tiny preset, run once for test_exp3 and test_reproduce (it took
    13–20 s in each).  Read it only: a test that writes into the folder works on a copy (shutil.copytree)."""
    from gflow.experiments import exp3

    out = tmp_path_factory.mktemp("exp3-tiny")
    return out, exp3.run("tiny", out, progress=False)


@pytest.fixture
def keeps_matplotlib_backend():
    """Runs the test under matplotlib's ``svg`` backend and fails it if the code switched the backend (an
    experiment's figures switched a user's session to Agg, where plt.show() then shows nothing)."""
    import matplotlib

    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        yield
        assert matplotlib.get_backend() == "svg", f"the process's matplotlib backend became {matplotlib.get_backend()}"
    finally:
        matplotlib.use(previous)
