"""Bad input and solver failures (the issue's "Bad input and failures" section).

Every bad input must raise a ValueError or TypeError whose message names the argument and says what was
expected and what arrived; nothing is checked with a bare ``assert``.  Every solver failure must end, in
bounded time, with a status, a message that says what to try and the trajectory computed so far.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import math
import re
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import gflow as gf
from gflow.solve.ode import FIXED_STEP_METHODS

PACKAGE_DIR = Path(gf.__file__).resolve().parent
TIME_LIMIT = 60.0  # seconds any single failing run may take (the issue: "never a hang")
HAVE_PYTEST_TIMEOUT = importlib.util.find_spec("pytest_timeout") is not None

# pytest-timeout (in the [test] extra) guards against hangs in CI; without it, finishes_within() arms SIGALRM.
bounded = pytest.mark.timeout(TIME_LIMIT) if HAVE_PYTEST_TIMEOUT else (lambda f: f)

D_IN, N = 3, 6
X0, Y0 = gf.data.random_labels(n=N, d=D_IN, seed=0)


@contextlib.contextmanager
def finishes_within(seconds: float = TIME_LIMIT):
    """Fail (instead of hanging) if the block runs longer than ``seconds``."""

    def _alarm(signum, frame):
        raise TimeoutError(f"the run did not stop within {seconds} s: the engine hangs instead of failing")

    arm = (not HAVE_PYTEST_TIMEOUT and hasattr(signal, "SIGALRM")
           and threading.current_thread() is threading.main_thread())
    if arm:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        if arm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"the run took {elapsed:.1f} s (limit {seconds} s)"


def small_net(**kw) -> gf.Network:
    return gf.Network(**{"d": D_IN, "width": 4, "seed": 0, **kw})


def run_simulate(net=None, **kw):
    args = {"X": X0, "y": Y0, "t1": 1.0, **kw}
    return gf.simulate(small_net() if net is None else net, **args)


def run_gd(net=None, **kw):
    args = {"X": X0, "y": Y0, "step": 0.5, "steps": 10, "save_every": 5, **kw}
    return gf.gradient_descent(small_net() if net is None else net, **args)


def assert_partial_trajectory(sol: gf.Solution, t1: float) -> None:
    """A failed run keeps what it computed: increasing times before t1, finite loss, H at the last time."""
    assert len(sol.t) >= 1
    assert sol.t[0] == 0.0
    assert np.all(np.diff(sol.t) > 0)
    assert sol.t[-1] < t1
    assert np.all(np.isfinite(sol.loss)) and sol.loss.shape == sol.t.shape
    assert sol.residual.shape == (len(sol.t), sol.n)
    assert sol.feature_t[-1] == sol.t[-1], "the features at the stopping time must be kept"
    assert sol.H.shape[1:] == (sol.m, sol.n) and np.all(np.isfinite(sol.H[-1]))
    assert np.all(np.isfinite(sol.W_final))


# ---------------------------------------------------------------------------------------------------------
# No assertions on user input anywhere in the package


def test_the_package_source_contains_no_assert_statements():
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno}"
                      for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert not offenders, f"bare assert statements (disabled by python -O, unclear to users): {offenders}"


# ---------------------------------------------------------------------------------------------------------
# Bad training / test data

NAN_X = X0.copy()
NAN_X[2, 1] = np.nan
INF_X = X0.copy()
INF_X[0, 0] = np.inf
NAN_Y = Y0.copy()
NAN_Y[3] = np.nan
INF_Y = Y0.copy()
INF_Y[1] = -np.inf

BAD_DATA = [
    ("X_with_one_dimension", dict(X=X0[0]), ValueError, r"X must be 2-D, got shape \(3,\)"),
    ("X_with_three_dimensions", dict(X=X0[None]), ValueError, r"X must be 2-D, got shape \(1, 6, 3\)"),
    ("X_with_the_wrong_input_dimension", dict(X=X0[:, :2]), ValueError,
     r"X must have shape .*3.*got \(6, 2\)"),
    ("X_empty", dict(X=np.zeros((0, D_IN)), y=np.zeros(0)), ValueError, r"X is empty"),
    ("X_of_strings", dict(X=[["a", "b", "c"]] * N), TypeError, r"X must be a numeric array"),
    ("X_complex", dict(X=X0 + 1j), TypeError, r"X must be real.*complex"),
    ("X_None", dict(X=None), TypeError, r"X must be a numeric array, got NoneType"),
    ("X_with_NaN", dict(X=NAN_X), ValueError, r"X contains 1 non-finite value"),
    ("X_with_inf", dict(X=INF_X), ValueError, r"X contains 1 non-finite value"),
    ("y_shorter_than_X", dict(y=Y0[:-1]), ValueError, r"y has 5 entries but there are 6 inputs"),
    ("y_longer_than_X", dict(y=np.r_[Y0, 0.0]), ValueError, r"y has 7 entries but there are 6 inputs"),
    ("y_with_two_columns", dict(y=np.zeros((N, 2))), ValueError,
     r"y must have shape \(6,\) or \(6, 1\).*\(6, 2\)"),
    ("y_three_dimensional", dict(y=np.zeros((N, 1, 1))), ValueError, r"y must be 1-D or 2-D"),
    ("y_with_NaN", dict(y=NAN_Y), ValueError, r"y contains 1 non-finite value"),
    ("y_with_inf", dict(y=INF_Y), ValueError, r"y contains 1 non-finite value"),
    ("X_test_without_y_test", dict(X_test=X0), ValueError,
     r"X_test and y_test must be given together.*X_test"),
    ("y_test_without_X_test", dict(y_test=Y0), ValueError,
     r"X_test and y_test must be given together.*y_test"),
    ("X_test_with_the_wrong_input_dimension", dict(X_test=np.zeros((2, 4)), y_test=np.zeros(2)), ValueError,
     r"X_test must have shape .*got \(2, 4\)"),
    ("y_test_length_mismatch", dict(X_test=np.zeros((2, D_IN)), y_test=np.zeros(3)), ValueError,
     r"y_test has 3 entries but there are 2 inputs"),
    ("X_test_with_NaN", dict(X_test=NAN_X, y_test=Y0), ValueError, r"X_test contains 1 non-finite"),
    ("y_test_with_inf", dict(X_test=X0, y_test=INF_Y), ValueError, r"y_test contains 1 non-finite"),
]


@pytest.mark.parametrize("kwargs, exc, match", [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA])
def test_bad_data_for_simulate_is_rejected_naming_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        run_simulate(**kwargs)


@pytest.mark.parametrize("kwargs, exc, match", [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA])
def test_bad_data_for_gradient_descent_is_rejected_naming_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        run_gd(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# Bad network arguments

BAD_NETWORK = [
    ("width_zero", dict(width=0), ValueError, r"width must be an integer >= 1, got 0"),
    ("width_negative", dict(width=-1), ValueError, r"width must be an integer >= 1, got -1"),
    ("width_fractional", dict(width=2.5), TypeError, r"width must be an integer >= 1, got float 2\.5"),
    ("width_bool", dict(width=True), TypeError, r"width must be an integer >= 1, got bool"),
    ("d_zero", dict(d=0), ValueError, r"d must be an integer >= 1, got 0"),
    ("c_hat_zero", dict(c_hat=0.0), ValueError, r"c_hat must be > 0, got 0"),
    ("c_hat_negative", dict(c_hat=-1.0), ValueError, r"c_hat must be > 0, got -1"),
    ("c_hat_nan", dict(c_hat=float("nan")), ValueError, r"c_hat must be a finite number, got nan"),
    ("c_hat_string", dict(c_hat="1"), TypeError, r"c_hat must be a real number, got str"),
    ("seed_negative", dict(seed=-1), ValueError, r"seed must be an integer >= 0, got -1"),
    ("odd_width_with_ntk_scaling", dict(width=5, scaling="ntk"), ValueError,
     r"width must be even for the 'ntk' scaling.*width=5"),
    ("unknown_activation", dict(activation="swish"), ValueError,
     r"unknown activation 'swish'; expected one of"),
    ("activation_of_wrong_type", dict(activation=3), TypeError, r"activation must be a name .*got int 3"),
    ("activation_with_unknown_parameter", dict(activation={"name": "relu", "slope": 0.1}), TypeError,
     r"activation 'relu' does not take parameters \['slope'\]"),
    ("leaky_relu_slope_out_of_range", dict(activation={"name": "leaky_relu", "slope": 2.0}), ValueError,
     r"leaky_relu slope must be in \(0, 1\), got 2"),
    ("unknown_embedding_string", dict(embedding="cubic"), ValueError, r"unknown embedding 'cubic'"),
    ("embedding_of_wrong_type", dict(embedding=3), TypeError, r"embedding must be .*got int 3"),
    ("callable_embedding_with_wrong_output", dict(embedding=lambda X: X[:, 0]), ValueError,
     r"callable embedding must map an \(n, d\) tensor to an \(n, D\) tensor.*shape \(1,\)"),
    ("unknown_scaling", dict(scaling="xavier"), ValueError, r"unknown scaling 'xavier'; expected one of"),
    ("scaling_of_wrong_type", dict(scaling=3), TypeError, r"scaling must be one of .*got int 3"),
    ("unsupported_dtype", dict(dtype=torch.float16), TypeError,
     r"dtype must be torch\.float64 or torch\.float32"),
    ("unknown_device_string", dict(device="nope"), TypeError,
     r"device must be a torch device .*got str 'nope'"),
    ("unsupported_device_type", dict(device="meta"), ValueError,
     r"device must be 'cpu' or 'cuda'.*got 'meta'"),
    ("W0_with_wrong_shape", dict(W0=np.zeros((4, 2))), ValueError,
     r"W0 must have shape \(4, 3\), got \(4, 2\)"),
    ("W0_three_dimensional", dict(W0=np.zeros((4, 3, 1))), ValueError,
     r"W0 must be 2-D, got shape \(4, 3, 1\)"),
    ("W0_with_NaN", dict(W0=np.full((4, 3), np.nan)), ValueError, r"W0 contains 12 non-finite"),
    ("c_with_wrong_length", dict(c=np.ones(5)), ValueError, r"c must have shape \(4,\), got \(5,\)"),
    ("c_with_inf", dict(c=np.array([1.0, np.inf, 1.0, -1.0])), ValueError, r"c contains 1 non-finite"),
    ("c_float32_tensor_for_float64_network", dict(c=torch.ones(4, dtype=torch.float32)), TypeError,
     r"c has dtype torch\.float32 but dtype=torch\.float64"),
    ("W0_float32_tensor_for_float64_network", dict(W0=torch.zeros(4, 3, dtype=torch.float32)), TypeError,
     r"W0 has dtype torch\.float32 but dtype=torch\.float64"),
    ("c_tensor_on_another_device", dict(c=torch.ones(4, dtype=torch.float64, device="meta")), ValueError,
     r"c is on device meta but device=cpu"),
    ("W0_tensor_on_another_device", dict(W0=torch.zeros(4, 3, dtype=torch.float64, device="meta")),
     ValueError,
     r"W0 is on device meta but device=cpu"),
    ("width_beyond_the_machine_memory", dict(width=2**40), ValueError,
     r"width × D = 1099511627776 × 3 first-layer weights need 2\.46e\+04 GiB in float64, more than this machine's"),
    ("embedding_beyond_the_machine_memory", dict(d=2**21, embedding="quadratic"), ValueError,
     r"width × D = 4 × 4398046511104 .*\(d = 2097152, embedded to D = 4398046511104\)"),
]


@pytest.mark.parametrize("kwargs, exc, match", [c[1:] for c in BAD_NETWORK], ids=[c[0] for c in BAD_NETWORK])
def test_bad_network_argument_is_rejected_naming_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        small_net(**kwargs)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: gf.RandomFeatures(D=0), ValueError, r"RandomFeatures D must be an integer >= 1, got 0"),
        (lambda: gf.RandomFeatures(D=4, seed=-2), ValueError, r"RandomFeatures seed must be an integer >= 0"),
        (lambda: gf.DeepRandomFeatures(D=4, depth=2), ValueError,
         r"DeepRandomFeatures depth must be an integer >= 3"),
        (lambda: gf.Activation("a", torch.tanh, lambda u: 1 - torch.tanh(u) ** 2, 1.0, (1.0, -1.0)),
         ValueError,
         r"interval must have I_l < I_r"),
        (lambda: gf.Activation("a", "tanh", torch.tanh, 1.0, (-1.0, 1.0)), TypeError,
         r"sigma must be callable"),
        (lambda: small_net(embedding={"D": 3}), ValueError,
         r"an embedding spec needs kind = 'identity', 'quadratic', 'random_features' or 'deep_random_features' "
         r".*got \{'D': 3\}"),
        (lambda: small_net(embedding={"kind": "callable", "fn": "m:f"}), ValueError,
         r"a callable embedding cannot be rebuilt from its spec"),
        (lambda: small_net(embedding={"name": "random_features", "D": 0}), ValueError,  # "name" as in activations
         r"RandomFeatures D must be an integer >= 1, got 0"),
    ],
    ids=["random_features_D_zero", "random_features_negative_seed", "deep_random_features_depth_two",
         "activation_with_reversed_interval", "activation_with_non_callable_sigma", "embedding_spec_without_kind",
         "embedding_spec_of_a_callable", "embedding_spec_with_name_for_kind"],
)
def test_bad_embedding_or_activation_specification_is_rejected_naming_the_field(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here, so device='cuda' is valid")
def test_requesting_cuda_without_cuda_is_a_value_error_naming_the_device():
    with pytest.raises(ValueError, match=r"device 'cuda' was requested but CUDA is not available"):
        small_net(device="cuda")


def test_odd_ntk_width_with_explicit_W0_but_drawn_c_is_rejected_naming_the_width():
    # the symmetrised draw of c pairs neuron i with i + m/2, so an odd width needs an explicit c as well
    with pytest.raises(ValueError, match=r"width must be even for the 'ntk' scaling.*width=3"):
        gf.Network(d=D_IN, width=3, scaling="ntk", W0=np.zeros((3, D_IN)))


def test_odd_ntk_width_with_explicit_c_and_W0_is_allowed_and_runs():
    net = gf.Network(d=D_IN, width=3, scaling="ntk", c=np.array([1.0, -1.0, 1.0]), W0=np.ones((3, D_IN)))
    assert net.c.shape == (3,) and run_simulate(net).ok


# ---------------------------------------------------------------------------------------------------------
# Bad solver arguments

BAD_SIMULATE = [
    ("net_not_a_network", dict(net="net"), TypeError, r"net must be a gf\.Network, got str"),
    ("unknown_method", dict(method="rk45"), ValueError, r"unknown method 'rk45'; expected one of .*'RK45'"),
    ("method_of_wrong_type", dict(method=None), TypeError, r"method must be one of .*got NoneType"),
    ("unknown_option_key", dict(method="dopri5", options={"foo": 1}), ValueError,
     r"unknown option\(s\) \['foo'\] for method 'dopri5'; allowed: \['dfactor'"),
    ("scipy_only_option_for_scipy_method", dict(method="DOP853", options={"safety": 0.9}), ValueError,
     r"unknown option\(s\) \['safety'\] for method 'DOP853'"),
    ("any_option_for_rk4", dict(method="rk4", step=0.1, options={"first_step": 0.1}), ValueError,
     r"unknown option\(s\) \['first_step'\] for method 'rk4'; allowed: none"),
    ("options_not_a_dict", dict(options=[("first_step", 0.1)]), TypeError,
     r"options must be a dict, got list"),
    ("unknown_space", dict(space="input"), ValueError, r"unknown space 'input'; expected one of"),
    ("rtol_zero", dict(rtol=0.0), ValueError, r"rtol must be > 0, got 0"),
    ("rtol_negative", dict(rtol=-1e-6), ValueError, r"rtol must be > 0, got -1e-06"),
    ("rtol_nan", dict(rtol=float("nan")), ValueError, r"rtol must be a finite number"),
    ("rtol_string", dict(rtol="1e-6"), TypeError, r"rtol must be a real number, got str"),
    ("rtol_above_1", dict(rtol=2.0), ValueError, r"rtol must be ≤ 1 \(a relative tolerance: 1 is 100 %\), got 2"),
    ("atol_zero", dict(atol=0.0), ValueError, r"atol must be > 0, got 0"),
    ("atol_negative", dict(atol=-1e-9), ValueError, r"atol must be > 0, got -1e-09"),
    ("step_given_to_dopri5", dict(method="dopri5", step=0.1), ValueError,
     r"step=0\.1 was given but method 'dopri5' is adaptive"),
    ("step_given_to_DOP853", dict(method="DOP853", step=0.1), ValueError,
     r"step=0\.1 was given but method 'DOP853' is adaptive"),
    ("fixed_step_negative", dict(method="rk4", step=-0.1), ValueError, r"step must be > 0, got -0\.1"),
    ("fixed_step_infinite", dict(method="rk4", step=float("inf")), ValueError,
     r"step must be a finite number"),
    ("saveat_repeated_time", dict(t1=None, saveat=[0.0, 0.5, 0.5, 1.0]), ValueError,
     r"saveat must be strictly increasing, but saveat\[1\] = 0\.5 >= saveat\[2\] = 0\.5"),
    ("saveat_decreasing", dict(t1=None, saveat=[0.0, 1.0, 0.5]), ValueError,
     r"saveat must be strictly increasing"),
    ("saveat_negative", dict(t1=None, saveat=[-1.0, 1.0]), ValueError, r"saveat must be >= 0 .*got -1"),
    ("saveat_with_NaN", dict(t1=None, saveat=[0.0, np.nan]), ValueError, r"saveat must be finite.*nan"),
    ("saveat_with_inf", dict(t1=None, saveat=[0.0, np.inf]), ValueError, r"saveat must be finite.*inf"),
    ("saveat_beyond_t1", dict(t1=1.0, saveat=[0.0, 2.0]), ValueError,
     r"saveat runs to 2\.0 beyond t1 = 1\.0"),
    ("saveat_two_dimensional", dict(t1=None, saveat=[[0.0, 1.0]]), ValueError, r"saveat must be 1-D"),
    ("saveat_empty", dict(t1=None, saveat=[]), ValueError, r"saveat is empty"),
    ("saveat_only_zero", dict(t1=None, saveat=[0.0]), ValueError, r"saveat must reach beyond t = 0"),
    ("missing_t1_and_saveat", dict(t1=None), TypeError,
     r"give the final time t1 .* or the output times saveat"),
    ("t1_zero", dict(t1=0.0), ValueError, r"t1 must be > 0, got 0"),
    ("t1_negative", dict(t1=-2.0), ValueError, r"t1 must be > 0, got -2"),
    ("t1_nan", dict(t1=float("nan")), ValueError, r"t1 must be a finite number, got nan"),
    ("t1_string", dict(t1="1"), TypeError, r"t1 must be a real number, got str"),
    ("features_at_beyond_t1", dict(features_at=[0.5, 2.0]), ValueError,
     r"features_at runs to 2\.0 beyond t1"),
    ("features_at_unknown_keyword", dict(features_at="none"), TypeError, r"features_at must be a 1-D array"),
    ("weights_at_beyond_t1", dict(weights_at=[3.0]), ValueError, r"weights_at runs to 3\.0 beyond t1"),
    ("weights_at_non_increasing", dict(weights_at=[0.5, 0.2]), ValueError,
     r"weights_at must be strictly increasing"),
    ("interval_reversed", dict(interval=(1.0, 0.0)), ValueError,
     r"interval must satisfy I_l < I_r, got \(1\.0, 0\.0\)"),
    ("interval_with_NaN", dict(interval=(0.0, float("nan"))), ValueError, r"interval must satisfy I_l < I_r"),
    ("interval_not_a_pair", dict(interval=1.0), TypeError,
     r"interval must be a pair \(I_l, I_r\).*got float"),
    ("integrals_not_a_bool", dict(integrals="yes"), TypeError, r"integrals must be True or False, got str"),
    ("progress_not_a_bool", dict(progress="yes"), TypeError, r"progress must be True, False or None, got str"),
    ("max_steps_zero", dict(max_steps=0), ValueError, r"max_steps must be an integer >= 1, got 0"),
    ("max_steps_fractional", dict(max_steps=10.5), TypeError, r"max_steps must be an integer"),
    ("max_wall_time_zero", dict(max_wall_time=0), ValueError, r"max_wall_time must be > 0, got 0"),
    ("max_wall_time_negative", dict(max_wall_time=-1.0), ValueError, r"max_wall_time must be > 0, got -1"),
    ("X_float32_tensor_for_float64_network", dict(X=torch.as_tensor(X0, dtype=torch.float32)), TypeError,
     r"X has dtype torch\.float32 but the network uses torch\.float64"),
    ("y_float32_tensor_for_float64_network", dict(y=torch.as_tensor(Y0, dtype=torch.float32)), TypeError,
     r"y has dtype torch\.float32 but the network uses torch\.float64"),
    ("X_float64_tensor_for_float32_network", dict(net=small_net(dtype="float32"), X=torch.as_tensor(X0)),
     TypeError, r"X has dtype torch\.float64 but the network uses torch\.float32"),
    ("X_test_float32_tensor_for_float64_network",
     dict(X_test=torch.as_tensor(X0, dtype=torch.float32), y_test=Y0), TypeError,
     r"X_test has dtype torch\.float32"),
    ("scipy_method_with_float32_network", dict(net=small_net(dtype="float32"), method="DOP853"), TypeError,
     r"scipy method 'DOP853' needs dtype float64, but the network has torch\.float32"),
    ("X_on_another_device", dict(X=torch.as_tensor(X0).to("meta")), ValueError,
     r"X is on device meta but the network is on cpu"),
    ("y_on_another_device", dict(y=torch.as_tensor(Y0).to("meta")), ValueError,
     r"y is on device meta but the network is on cpu"),
]


@pytest.mark.parametrize("kwargs, exc, match", [c[1:] for c in BAD_SIMULATE],
                         ids=[c[0] for c in BAD_SIMULATE])
def test_bad_simulate_argument_is_rejected_naming_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        run_simulate(**kwargs)


@pytest.mark.parametrize("method", ["dop853", "dopri5"])
def test_a_huge_tolerance_whose_error_norms_underflow_runs_instead_of_dividing_by_zero(method):
    # atol = 1e300 (rtol = atol = 1e300 before rtol > 1 was refused): DOP853's e5² + 0.01·e3² underflowed to 0
    # (ZeroDivisionError); Hairer's guard takes 1
    sol = run_simulate(method=method, rtol=1.0, atol=1e300)
    assert sol.status == "success" and np.isfinite(sol.loss).all()


@pytest.mark.parametrize("method", FIXED_STEP_METHODS)
def test_fixed_step_method_without_a_step_is_rejected_asking_for_one(method):
    want = (rf"method '{method}' needs step= \(its largest step" if method == "sliding"
            else rf"method '{method}' is a fixed-step method and needs an explicit step")
    with pytest.raises(ValueError, match=want):
        run_simulate(method=method)


def test_fixed_step_so_small_it_exceeds_max_steps_is_rejected_before_integrating():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"method 'euler' with step=1e-06 needs \d+ steps to reach t1=1, "
                                         r"more than max_steps=1000; raise max_steps or enlarge step"):
        run_simulate(method="euler", step=1e-6, max_steps=1000)
    assert time.perf_counter() - start < 5.0, "the check must be upfront, not after 1000 steps"


@pytest.mark.parametrize("method", ["rk4", "sliding"])
def test_a_tiny_fixed_step_is_refused_at_once_without_building_its_grid(method):
    # step=1e-9 to t1=1: the count check used to build all 1e9 step times first (8 GB, a hang)
    with finishes_within(10.0), pytest.raises(ValueError, match=r"needs 1000000\d\d\d steps to reach t1=1"):
        run_simulate(method=method, step=1e-9, t1=1.0)


def test_the_fixed_step_count_equals_the_grid_it_stands_for():
    from gflow.solve.ode import _fixed_grid, _fixed_step_count

    rng = np.random.default_rng(0)
    for _ in range(500):
        times = np.unique(np.round(np.concatenate([[0.0], rng.uniform(0.0, 10.0, rng.integers(1, 6))]),
                                   int(rng.integers(1, 4))))
        if times.size < 2:
            continue
        h = float(rng.choice([0.1, 0.25, 1 / 3, 0.05, rng.uniform(0.01, 3.0)]))
        assert _fixed_step_count(times, h) == _fixed_grid(times, h).size - 1, (times, h)


@pytest.mark.parametrize("method", ["Radau", "BDF", "LSODA"])
def test_implicit_scipy_method_on_a_too_large_state_is_rejected_before_forming_the_jacobian(method):
    # feature-space state (2, m, n) has 2 * 1500 * 6 = 18000 > 16384 entries (the dense-Jacobian limit)
    net = gf.Network(d=D_IN, width=1500, seed=0)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"method '{method}' forms a dense finite-difference Jacobian "
                                         r"of the \d+-dimensional state.*too large"):
        run_simulate(net, method=method, space="feature")
    assert time.perf_counter() - start < 5.0


BAD_GD = [
    ("net_not_a_network", dict(net=object()), TypeError, r"net must be a gf\.Network, got object"),
    ("step_zero", dict(step=0), ValueError, r"step must be > 0 .*got 0"),
    ("step_zero_float", dict(step=0.0), ValueError, r"step must be > 0 .*got 0"),
    ("step_negative", dict(step=-0.5), ValueError, r"step must be > 0 .*got -0\.5"),
    ("step_negative_numpy", dict(step=np.float64(-1.0)), ValueError, r"step must be > 0.*got -1"),
    ("step_nan", dict(step=float("nan")), ValueError, r"step must be a finite number, got nan"),
    ("step_string", dict(step="1"), TypeError, r"step must be a real number, got str"),
    ("steps_zero", dict(steps=0), ValueError, r"steps must be an integer >= 1, got 0"),
    ("steps_negative", dict(steps=-3), ValueError, r"steps must be an integer >= 1, got -3"),
    ("steps_fractional", dict(steps=2.5), TypeError, r"steps must be an integer >= 1, got float 2\.5"),
    ("steps_whole_float", dict(steps=1e3), TypeError,
     r"steps must be an integer >= 1, got float 1000\.0 \(a float, as 1e3 is: write 1000\)"),
    ("save_every_zero", dict(save_every=0), ValueError, r"save_every must be an integer >= 1, got 0"),
    ("save_every_too_small_for_the_steps", dict(steps=10**12, save_every=1), ValueError,
     r"steps=1000000000000 with save_every=1 would save 1000000000001 points .*raise save_every to at least 100000"),
    ("features_at_off_the_step_grid", dict(step=0.3, features_at=[0.5]), ValueError,
     r"features_at must be multiples of the step 0\.3 .*got \[0\.5\]"),
    ("weights_at_off_the_step_grid", dict(step=1.0, weights_at=[0.5, 2.0]), ValueError,
     r"weights_at must be multiples of the step 1 .*got \[0\.5\]"),
    ("features_at_beyond_the_last_step", dict(step=1.0, steps=10, features_at=[20.0]), ValueError,
     r"features_at runs to t = 20 beyond the last step \(t = 10\)"),
    ("features_at_non_increasing", dict(step=1.0, features_at=[2.0, 1.0]), ValueError,
     r"features_at must be strictly increasing"),
    ("unknown_space", dict(space="input"), ValueError, r"unknown space 'input'"),
    ("max_wall_time_zero", dict(max_wall_time=0.0), ValueError, r"max_wall_time must be > 0"),
    ("interval_reversed", dict(interval=(1.0, 0.0)), ValueError, r"interval must satisfy I_l < I_r"),
    ("integrals_not_a_bool", dict(integrals=1), TypeError, r"integrals must be True or False, got int"),
    ("progress_not_a_bool", dict(progress=1), TypeError, r"progress must be True, False or None, got int"),
    ("X_float32_tensor_for_float64_network", dict(X=torch.as_tensor(X0, dtype=torch.float32)), TypeError,
     r"X has dtype torch\.float32 but the network uses torch\.float64"),
]


@pytest.mark.parametrize("kwargs, exc, match", [c[1:] for c in BAD_GD], ids=[c[0] for c in BAD_GD])
def test_bad_gradient_descent_argument_is_rejected_naming_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        run_gd(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# Failure statuses: bounded time, a status, advice and the partial trajectory

RELU_T1 = 200.0


@pytest.fixture(scope="module")
def relu_problem():
    """ReLU on the identity embedding with n > d: the flow reaches the kink and chatters there."""
    X, y = gf.data.random_labels(n=20, d=5, seed=0)
    return gf.Network(d=5, width=64, activation="relu", seed=0), X, y


@bounded
@pytest.mark.parametrize("method", ["dopri5", "bosh3", "DOP853", "RK45"])
def test_relu_flow_at_tight_tolerance_stops_with_a_stall_status_instead_of_hanging(relu_problem, method):
    net, X, y = relu_problem
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"stopped early \[") as record:
        sol = gf.simulate(net, X, y, t1=RELU_T1, method=method, rtol=1e-10, atol=1e-12)
    assert sol.status in {"stalled", "max_steps", "step_size_collapse"}, sol.message
    assert not sol.ok
    assert any(f"[{sol.status}]" in str(w.message) for w in record if issubclass(w.category, gf.GFlowWarning))
    # the message says what happened and what to do
    assert "step" in sol.message and "fixed-step" in sol.message
    assert "kink" in sol.message or "ReLU" in sol.message
    assert_partial_trajectory(sol, RELU_T1)
    assert sol.stats["n_steps"] <= sol.config["solver"]["max_steps"]
    with pytest.raises(gf.SolverError, match=rf"\[{sol.status}\]"):
        sol.raise_for_status()
    assert sol.status in sol.summary()


@bounded
def test_relu_flow_with_the_advised_fixed_step_method_reaches_t1():
    # The stall message advises method='euler', step=0.05, error_estimate=True: that advice must work on the same
    # problem.
    X, y = gf.data.random_labels(n=20, d=5, seed=0)
    net = gf.Network(d=5, width=64, activation="relu", seed=0)
    with finishes_within(TIME_LIMIT):
        sol = gf.simulate(net, X, y, t1=20.0, saveat=np.linspace(0, 20, 5), method="euler", step=0.05,
                          error_estimate=True)
    assert sol.ok and sol.t[-1] == 20.0 and sol.loss[-1] < sol.loss[0]
    assert np.all(np.isfinite(sol.error_estimate))


@bounded
@pytest.mark.parametrize("method", ["dopri5", "bosh3", "dopri8", "DOP853", "RK45"])
def test_max_steps_on_a_smooth_flow_stops_with_status_max_steps_and_the_partial_trajectory(method):
    X, y = gf.data.random_labels(n=10, d=5, seed=0)
    net = gf.Network(d=5, width=16, activation="tanh", seed=0)
    t1 = 1000.0
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"\[max_steps\]"):
        sol = gf.simulate(net, X, y, t1=t1, method=method, max_steps=50)
    assert sol.status == "max_steps" and not sol.ok
    assert "max_steps=50" in sol.message and "raise max_steps" in sol.message
    assert sol.stats["n_steps"] == 50
    assert_partial_trajectory(sol, t1)
    assert sol.t[-1] > 0.0, "some progress must be kept"
    assert sol.loss[-1] <= sol.loss[0]


def test_a_run_that_needs_exactly_max_steps_steps_succeeds():
    sol = run_simulate(t1=1.0, saveat=[0.0, 1.0], method="rk4", step=0.1, max_steps=10)
    assert sol.ok, sol.message
    assert sol.t[-1] == 1.0


@bounded
@pytest.mark.parametrize("method", ["dopri5", "DOP853", "rk4"])
def test_tiny_wall_time_budget_stops_with_status_time_budget(method):
    X, y = gf.data.random_labels(n=10, d=5, seed=0)
    net = gf.Network(d=5, width=16, activation="tanh", seed=0)
    kw = {"step": 0.01} if method == "rk4" else {}
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        sol = gf.simulate(net, X, y, t1=100.0, method=method, max_wall_time=1e-6, **kw)
    assert sol.status == "time_budget" and not sol.ok
    assert "max_wall_time" in sol.message and "raise max_wall_time" in sol.message
    assert_partial_trajectory(sol, 100.0)
    assert sol.loss[0] == pytest.approx(float(net.loss(X, y)), rel=1e-12)


@bounded
def test_tiny_wall_time_budget_stops_gradient_descent_with_status_time_budget():
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        sol = run_gd(steps=100_000, max_wall_time=1e-6)
    assert sol.status == "time_budget" and "max_wall_time" in sol.message
    assert_partial_trajectory(sol, 0.5 * 100_000)


def _diverging_gd(**kw):
    X, y = gf.data.random_labels(n=10, d=5, seed=0)
    net = gf.Network(d=5, width=16, activation="linear", seed=0)
    return gf.gradient_descent(net, 10.0 * X, y, step=100.0, steps=200, save_every=10, **kw)


@bounded
def test_gradient_descent_with_a_huge_step_stops_with_status_diverged_and_finite_history():
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"\[diverged\]"):
        sol = _diverging_gd()
    assert sol.status == "diverged" and not sol.ok
    assert "smaller step" in sol.message
    assert_partial_trajectory(sol, 100.0 * 200)
    # the iterates kept are those before the blow-up: here the first saved step is past 1e10·L0 already
    assert np.all(np.isfinite(sol.loss)) and np.all(sol.loss <= 1e10 * sol.loss[0])
    assert sol.kind == "gd"
    with pytest.raises(gf.SolverError, match=r"\[diverged\]"):
        sol.raise_for_status()


def _blowing_up_euler(**kw):
    # forward Euler far beyond its stability limit on a linear net: the state overflows to inf/NaN between the two
    # output times (with saved times in between the loss's growth past 1e10·L₀ stops it first, as "diverged")
    X, y = gf.data.random_labels(n=10, d=5, seed=0)
    net = gf.Network(d=5, width=16, activation="linear", seed=0)
    return gf.simulate(net, 10.0 * X, y, t1=2000.0, saveat=[0.0, 2000.0], method="euler", step=10.0, **kw)


@bounded
def test_fixed_step_flow_that_blows_up_ends_with_status_nonfinite_not_an_exception():
    # regression: the internal Abort used to escape simulate() when the kept partial state was non-finite
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"\[nonfinite\]"):
        sol = _blowing_up_euler()
    assert sol.status == "nonfinite" and "activation" not in sol.message  # (σ is linear: the step, not σ)
    assert_partial_trajectory(sol, 2000.0)


@bounded
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4", "torchdiffeq.rk4"])
def test_fixed_step_flow_whose_loss_explodes_ends_diverged_with_the_stability_limit(method):
    # regression: rk4 at step 2 on ReLU grew the loss 15 → 8.3e153 and reported success (only inf/NaN was caught)
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    net = gf.Network(d=3, width=8, activation="relu", seed=0)
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"\[diverged\]"):
        sol = gf.simulate(net, 10 * X, y, t1=20.0, method=method, step=2.0)
    assert sol.status == "diverged"
    # each method's own limit ρ/λ_max(M₀) (rk4's interval reaches 2.785; it was quoted as 2 for every method)
    limit = "2.785/λ_max(M₀) = 0.0107" if method.endswith("rk4") else "2/λ_max(M₀) = 0.00769"
    assert limit in sol.message and "use a step below it" in sol.message
    assert method in sol.message
    assert_partial_trajectory(sol, 20.0)
    assert np.all(sol.loss <= 1e10 * sol.loss[0])


@bounded
def test_fixed_step_batch_whose_loss_explodes_ends_diverged_for_every_seed():
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    nets = gf.networks([0, 1], d=3, width=8, activation="relu")
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"\[diverged\]"):
        sols = gf.simulate_batch(nets, 10 * X, y, t1=20.0, method="rk4", step=2.0)
    assert [s.status for s in sols] == ["diverged", "diverged"]
    assert len(sols[0].t) == len(sols[1].t)  # every seed stops at the same time
    assert "2.785/λ_max(M₀)" in sols[0].message


@bounded
def test_fixed_step_flow_whose_loss_rises_warns_and_says_so_in_the_message():
    # regression: tanh, midpoint at step 2 (16× its limit 0.125): the loss went 0.376 → 0.403 and bounced, "success"
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    net = gf.Network(d=3, width=8, activation="tanh", seed=0)
    with pytest.warns(gf.GFlowWarning, match=r"loss rose from 0.375941 at t = 0 to 0.403386 at t = 2.*"
                      r"exceeds the stability limit 2/λ_max\(M₀\) = 0.125"):
        sol = gf.simulate(net, 10 * X, y, t1=20.0, method="midpoint", step=2.0)
    assert sol.status == "success" and "loss rose" in sol.message
    assert sol.stats["loss_rise"][:2] == [0.0, pytest.approx(sol.loss[0])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = gf.simulate(net, 10 * X, y, t1=20.0, method="midpoint", step=2.0, warn=False)
    assert "loss rose" in quiet.message
    with warnings.catch_warnings():  # a stable step: the loss decreases, no warning
        warnings.simplefilter("error")
        ok = gf.simulate(net, 10 * X, y, t1=20.0, method="midpoint", step=0.05)
    assert ok.ok and "loss rose" not in ok.message and "loss_rise" not in ok.stats


@bounded
@pytest.mark.parametrize("batch", [False, True])
def test_adaptive_flow_whose_loss_rises_warns_and_says_so_in_the_message(batch):
    # regression: scipy's RK45 at rtol 1e-3 on Experiment 1 (m = 256, t1 = 300) let the converged loss rise 27 times,
    # by up to 900×, and reported a plain success; a gradient flow's loss never increases
    X, y = gf.data.random_labels(n=20, d=20, seed=0)
    kw = dict(t1=300.0, method="RK45", rtol=1e-3)
    with pytest.warns(gf.GFlowWarning, match=r"the loss rose from .* but a gradient flow's loss never increases: "
                      r"method='RK45' at rtol=0.001 does not follow the flow there.*use method='dop853'"):
        if batch:  # (the seeds whose loss rose)
            sol = [s for s in gf.simulate_batch(gf.networks(range(2), d=20, width=256), X, y, **kw)
                   if "loss_rise" in s.stats][0]
        else:
            sol = gf.simulate(gf.Network(d=20, width=256, seed=0), X, y, **kw)
    assert sol.status == "success" and "; warning: the loss rose" in sol.message
    t0, L0, t, L = sol.stats["loss_rise"]
    assert t0 < t and L > L0 and np.any(np.diff(sol.loss) > 0)
    with warnings.catch_warnings():  # gflow's dop853 at the same tolerance: its loss decreases, no warning
        warnings.simplefilter("error")
        ok = gf.simulate(gf.Network(d=20, width=256, seed=0), X, y, t1=300.0, method="dop853", rtol=1e-3)
    assert ok.ok and "loss_rise" not in ok.stats and np.all(np.diff(ok.loss) <= 0.0)


@bounded
@pytest.mark.parametrize("batch", [False, True])
def test_fixed_step_past_the_stability_limit_that_freezes_warns(batch):
    # regression (a bad-input audit): ĉ = 1e4 saturates tanh; midpoint at step 1 (1e8× its limit 2/λ_max(M₀)) froze
    # with σ′ ≈ 0 at a constant loss — no rise for the guard to see — and ended "success" without a word
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    kw = dict(t1=10.0, method="midpoint", step=1.0)
    pattern = (r"step 1 of method='midpoint' exceeds its stability limit 2/λ_max\(M₀\) = 1.\d\de-08: the saved loss "
               r"did not rise")
    with pytest.warns(gf.GFlowWarning, match=pattern):
        if batch:
            sol = gf.simulate_batch(gf.networks(range(2), d=3, width=16, c_hat=1e4), X, y, **kw)[1]
        else:
            sol = gf.simulate(gf.Network(d=3, width=16, seed=1, c_hat=1e4), X, y, **kw)
    assert sol.status == "success" and sol.stats["unstable_step"] and "loss_rise" not in sol.stats
    assert np.ptp(sol.loss) == 0.0 and "exceeds its stability limit" in sol.message  # (frozen indeed)
    net = gf.Network(d=3, width=16, seed=0)
    lam = float(gf.simulate(net, X, y, t1=1.0, method="rk4", step=0.01).lam_max_M[0])
    with warnings.catch_warnings():  # rk4 within its own interval 2.785/λ_max (past 2/λ_max): no warning
        warnings.simplefilter("error")
        ok = gf.simulate(net, X, y, t1=1.0, method="rk4", step=2.5 / lam)
    assert ok.ok and "unstable_step" not in ok.stats


def test_gd_past_its_stability_limit_says_so_whatever_save_every():
    # (a usability audit: δ = 5 at 7.5× the limit 2/λ_max(M₀) = 0.665 ended "success" without a word at
    # save_every = 10, while save_every = 1 warned of a loss rise; the same iteration as method="euler" warned)
    X, y = gf.data.random_labels(n=40, d=10, seed=0)
    net = gf.Network(d=10, width=64, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a note, not a warning: GD past the limit can be what the user studies
        coarse = gf.gradient_descent(net, X, y, step=5.0, steps=200, save_every=10)
        batch = gf.gradient_descent_batch(gf.networks([0, 1], d=10, width=64), X, y, step=5.0, steps=200,
                                          save_every=10)
        within = gf.gradient_descent(net, X, y, step=0.5, steps=20, save_every=10)
    assert 0.6 < 2.0 / float(coarse.lam_max_M[0]) < 0.7
    for sol in (coarse, batch[0], batch[1]):
        limit = 2.0 / float(sol.lam_max_M[0])
        assert sol.status == "success" and sol.stats["unstable_step"] and "loss_rise" not in sol.stats
        assert f"note: δ = 5 exceeds GD's linear stability limit 2/λ_max(M₀) = {limit:.3g}" in sol.message
    assert batch[0].message == coarse.message
    assert within.ok and "unstable_step" not in within.stats and "note:" not in within.message
    with pytest.warns(gf.GFlowWarning, match="the loss rose"):
        fine = gf.gradient_descent(net, X, y, step=5.0, steps=200, save_every=1)
    assert fine.stats["unstable_step"] and "loss_rise" in fine.stats and "note:" not in fine.message


def test_a_fixed_step_longer_than_the_output_intervals_is_judged_by_the_steps_taken():
    # (a new-user audit: step = 5 to t1 = 1 takes one step of 1, yet was warned of as past the limit 2.04 and
    # recorded unstable_step)
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    net = gf.Network(d=4, width=16, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sol = gf.simulate(net, X, y, t1=1.0, method="euler", step=5.0)
    assert sol.ok and "unstable_step" not in sol.stats and sol.stats["last_step"] == 1.0
    with pytest.warns(gf.GFlowWarning, match=r"the step 5 of method='euler' exceeds its stability limit"):
        sol = gf.simulate(net, X, y, t1=10.0, saveat=[0.0, 10.0], method="euler", step=5.0)  # two steps of 5
    assert sol.stats["unstable_step"]


@pytest.mark.parametrize("entry", ["simulate", "simulate_batch", "gradient_descent"])
def test_a_ragged_list_of_inputs_is_refused_naming_x(entry):
    # (a new-user audit: simulate's memory pre-check called np.ndim on it first, and numpy's "inhomogeneous shape"
    # error came out of fromnumeric)
    ragged, y = [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], [0.1, 0.2]
    net = gf.Network(d=4, width=8, seed=0)
    call = {"simulate": lambda: gf.simulate(net, ragged, y, t1=1.0),
            "simulate_batch": lambda: gf.simulate_batch(gf.networks([0, 1], d=4, width=8), ragged, y, t1=1.0),
            "gradient_descent": lambda: gf.gradient_descent(net, ragged, y, step=0.1, steps=2)}[entry]
    with pytest.raises(TypeError, match=r"^X must be array-like, got list"):
        call()


@pytest.mark.parametrize("batch", [False, True])
def test_a_fixed_step_flow_that_blows_up_between_saved_times_is_told_the_stability_limit(batch):
    # (a new-user audit: it ended "nonfinite: … check the data scale, or try a smaller step", where GD's own message
    # names 2/λ_max(M₀))
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    kw = dict(t1=100.0, saveat=[0.0, 100.0], method="rk4", step=0.5, warn=False)
    if batch:
        sol = gf.simulate_batch(gf.networks([0, 1], d=4, width=16, activation="linear", c_hat=30.0), X, y, **kw)[0]
    else:
        sol = gf.simulate(gf.Network(d=4, width=16, activation="linear", c_hat=30.0, seed=0), X, y, **kw)
    assert sol.status == "nonfinite"
    assert re.search(r"the step 0.5 of method='rk4' exceeds the stability limit 2.785/λ_max\(M₀\) = \S+; use a step "
                     r"below it \(e.g. step=\S+\)", sol.message)


def _nan_activation() -> gf.Activation:
    """tanh whose derivative is NaN beyond |u| > 2: the vector field turns NaN once a feature grows there.

    With the network below max |H(0)| ≈ 1.55 and the features cross 2 near t ≈ 4.5, mid-run.
    """
    limit = [math.inf]  # NaN only from after construction on (gf.Activation checks σ′ against σ on [−3, 3])

    def dsigma(u):
        return torch.where(u.abs() > limit[0], torch.full_like(u, float("nan")), 1.0 - torch.tanh(u) ** 2)
    act = gf.Activation("tanh_nan_beyond_2", torch.tanh, dsigma, 1.0, (-1.0, 1.0), K=0.4)
    limit[0] = 2.0
    return act


@bounded
@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rk4", "DOP853", "RK45", "LSODA"])
def test_vector_field_that_turns_nan_ends_with_status_nonfinite(method):
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    net = gf.Network(d=4, width=6, activation=_nan_activation(), c_hat=3.0, seed=0)
    kw = {"step": 0.01} if method == "rk4" else {}
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"\[nonfinite\]"):
        sol = gf.simulate(net, X, y, t1=10.0, method=method, **kw)
    assert sol.status == "nonfinite", sol.message
    assert "non-finite" in sol.message
    assert_partial_trajectory(sol, 10.0)
    assert sol.t[-1] > 1.0, "the trajectory before the field turned NaN must be kept"
    # σ′ turned NaN at finite features: the activation is named, not the data scale (as GD names it)
    assert "of the activation 'tanh_nan_beyond_2' returned non-finite values at finite" in sol.message
    assert "check the data scale" not in sol.message


def _sqrt_activation() -> gf.Activation:
    """σ(u) = √(u + 4): σ and σ′ are NaN at u < −4, which the features below reach within t ≈ 0.1."""
    return gf.Activation("sqrt", lambda u: torch.sqrt(u + 4.0), lambda u: 0.5 / torch.sqrt(u + 4.0), lipschitz=10.0,
                         interval=(-1.0, 1.0))


@bounded
@pytest.mark.parametrize("method", ["dop853", "euler", "rk4", "torchdiffeq.rk4", "exprk4", "dop853+exprk4"])
def test_a_flow_made_non_finite_by_its_activation_names_the_activation(method):
    # regression: "the state or its derivative became non-finite near t = 0.0862; check the data scale, or try
    # method='dop853+exprk4'" (euler, rk4: "... use a smaller step") where σ = √(u + 4) had left its domain
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    net = gf.Network(d=4, width=16, activation=_sqrt_activation(), seed=0)
    kw = {"step": 0.05} if method in FIXED_STEP_METHODS else {}
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"\[nonfinite\]"):
        sol = gf.simulate(net, X, 30 * np.sign(y), t1=50.0, method=method, **kw)
    assert sol.status == "nonfinite" and 0.0 < sol.t[-1] < 0.2
    assert sol.message.startswith("σ or σ′ of the activation 'sqrt' returned non-finite values at finite features")
    assert "the activation, not the solver or the data scale" in sol.message
    assert "check the data scale" not in sol.message and "smaller step" not in sol.message


def test_raise_for_status_returns_the_solution_itself_after_success():
    sol = run_simulate(t1=0.5)
    assert sol.ok and sol.status == "success"
    assert sol.raise_for_status() is sol
    gd = run_gd()
    assert gd.raise_for_status() is gd


def test_raise_for_status_raises_solver_error_with_status_and_message_after_failure():
    sol = run_simulate(t1=100.0, max_steps=5, warn=False)
    assert sol.status == "max_steps"
    with pytest.raises(gf.SolverError) as info:
        sol.raise_for_status()
    assert "[max_steps]" in str(info.value) and sol.message in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_failures_issue_no_warning_when_warn_is_false(relu_problem):
    net, X, y = relu_problem
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = [
            run_simulate(t1=100.0, max_steps=5, warn=False),
            run_simulate(t1=100.0, max_wall_time=1e-6, warn=False),
            gf.simulate(net, X, y, t1=RELU_T1, rtol=1e-10, atol=1e-12, method="DOP853", warn=False),
            _diverging_gd(warn=False),
        ]
    assert [r.ok for r in runs] == [False] * 4
    assert not [w for w in caught if issubclass(w.category, gf.GFlowWarning)]


def test_every_failure_status_is_documented():
    assert {"success", "max_steps", "stalled", "step_size_collapse", "nonfinite", "time_budget", "diverged",
            "failed"} <= set(gf.STATUSES)
    assert all(isinstance(v, str) and v for v in gf.STATUSES.values())


def test_error_estimate_keeps_the_finest_solves_loss_rise_and_warns():
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    net = gf.Network(d=3, width=8, activation="tanh", seed=0)
    with pytest.warns(gf.GFlowWarning, match=r"simulate_nonsmooth: the finest solve \(step 0.5\): the loss rose"):
        sol = gf.simulate(net, 10 * X, y, t1=20.0, method="midpoint", step=2.0, error_estimate=True)
    assert "warning: the loss rose" in sol.message and "loss_rise" in sol.stats


@bounded
@pytest.mark.parametrize("method, activation, scale", [("dop853", "tanh", {"y": 1e150}), ("dopri5", "tanh", {"y": 1e150}),
                                                       ("auto", "relu", {"y": 1e150}),
                                                       ("filippov", "relu", {"c_hat": 1e150})])
def test_extreme_finite_data_scale_ends_in_a_step_size_collapse_at_once(method, activation, scale):
    # regression: dop853/dopri5 raised ZeroDivisionError (h0 = 0.01·d0/d1 underflowed to 0 in the initial-step
    # heuristic); filippov took 100 000 steps of length 0 in 33 s and ended as max_steps
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    net = gf.Network(d=3, width=8, activation=activation, seed=0, c_hat=scale.get("c_hat", 1.0))
    with finishes_within(TIME_LIMIT), pytest.warns(gf.GFlowWarning, match=r"\[step_size_collapse\]"):
        sol = gf.simulate(net, X, y * scale.get("y", 1.0), t1=1.0, method=method)
    assert sol.status == "step_size_collapse" and sol.stats["n_steps"] <= 1
    assert "time scale is set by the data and the network (the scale of X and y, c_hat" in sol.message
    assert_partial_trajectory(sol, 1.0)


# advice that fits the method and the cause (robustness audit, finding 7)


@pytest.mark.parametrize("dtype", [torch.int64, torch.float16])
def test_a_tensor_of_a_dtype_no_network_takes_is_told_to_convert_only(dtype):
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    with pytest.raises(TypeError, match=r"convert it with X.to\(torch.float64\)$"):
        gf.simulate(gf.Network(d=3, width=8, seed=0), torch.as_tensor(X).to(dtype), y, t1=1.0)


def test_filippov_advice_does_not_suggest_filippov_or_steps():
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    net = gf.Network(d=3, width=8, activation="relu", seed=0)
    for kw in ({"max_steps": 5}, {"max_wall_time": 1e-9}):
        sol = gf.simulate(net, X, y, t1=50.0, warn=False, **kw)
        assert sol.config["solver"]["method"] == "filippov" and not sol.ok
        assert "method='filippov'" not in sol.message and "larger or fewer steps" not in sol.message
        assert "method='sliding'" in sol.message
    assert "loosen rtol/atol" in sol.message


@pytest.mark.parametrize("kw", [{"max_wall_time": 1e-9}, {"max_steps": 1}])
def test_a_smooth_run_stopped_at_the_start_is_not_told_the_flow_is_stiff(kw):
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    sol = gf.simulate(gf.Network(d=3, width=8, seed=0), X, y, t1=50.0, method="dop853", warn=False, **kw)
    assert not sol.ok and "stiff" not in sol.message and "try a different method" in sol.message


def test_gd_made_non_finite_by_its_activation_blames_the_activation_not_the_step():
    # regression: at a stable step 0.01 GD reported "diverged ... far past the stability limit; use a smaller step"
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    net = gf.Network(d=3, width=8, activation=_nan_activation(), seed=0)
    with pytest.warns(gf.GFlowWarning, match=r"\[nonfinite\]"):
        sol = gf.gradient_descent(net, X, y, step=0.01, steps=1000)
    assert sol.status == "nonfinite" and "the activation, not the step" in sol.message
    assert "stability limit" not in sol.message


@pytest.mark.parametrize("space", ["feature", "weight"])
def test_gd_that_diverges_between_saved_steps_ends_at_its_last_iterate_before_the_blowup(space):
    # regression: divergence was seen at saved steps only, so save_every=100 ended at t = [0] ("non-finite state
    # between steps 0 and 100") and dropped step 1, whose loss was finite (gf.simulate's euler kept t = [0, 10])
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    net = gf.Network(d=4, width=16, activation="linear", seed=0)
    kw = dict(step=10.0, steps=200, space=space, warn=False)
    sol = gf.gradient_descent(net, 10.0 * X, y, save_every=100, **kw)
    every = gf.gradient_descent(net, 10.0 * X, y, save_every=1, **kw)  # (stops at the first step past 1e10·L₀)
    assert sol.status == every.status == "diverged" and sol.message == every.message
    assert sol.t.tolist() == every.t.tolist() == [0.0, 10.0] and "step 1 (t = 10)" in sol.message
    assert sol.feature_t[-1] == 10.0 and np.array_equal(sol.H[-1], every.H[-1])
    np.testing.assert_array_equal(sol.loss, every.loss)
    np.testing.assert_array_equal(sol.W_final, every.W_final)  # the end's weights: those of the kept step
    loss_end = float(net.loss(torch.as_tensor(10.0 * X), y, torch.as_tensor(sol.W_final)))
    assert loss_end == pytest.approx(sol.loss[-1], rel=1e-9)


def test_a_ctrl_c_during_gd_s_failure_replay_ends_the_run_at_its_last_saved_step(monkeypatch):
    # (a review: the replay ignored Ctrl-C) with the interruption asked for as the replay starts, the run ends where
    # it would have without the replay: at its last saved step, t = 0
    from gflow.solve import gd as gd_module

    real = gd_module._first_refused

    def interrupted_first(field, recorder, start, k0, k1, step, monitor):
        monitor.interrupt_requested = True
        return real(field, recorder, start, k0, k1, step, monitor)

    monkeypatch.setattr(gd_module, "_first_refused", interrupted_first)
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    net = gf.Network(d=4, width=16, activation="linear", seed=0)
    with pytest.raises(gf.Interrupted) as stop:  # (the Ctrl-C is then raised, carrying the run)
        gf.gradient_descent(net, 10.0 * X, y, step=10.0, steps=200, save_every=100, warn=False)
    sol = stop.value.solution
    assert sol.status == "diverged" and sol.t.tolist() == [0.0] and "the run ends at" not in sol.message


def test_gd_made_non_finite_by_its_activation_between_saved_steps_keeps_its_last_finite_iterate():
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    net = gf.Network(d=4, width=16, activation=_sqrt_activation(), seed=0)
    with pytest.warns(gf.GFlowWarning, match=r"\[nonfinite\]"):
        sol = gf.gradient_descent(net, X, 30 * np.sign(y), step=0.05, steps=1000, save_every=10)
    # σ = √(u + 4) is NaN at a feature below −4 at step 3: steps 1 and 2 were dropped (t = [0])
    assert sol.status == "nonfinite" and "at step 3 (t = 0.15): the activation, not the step" in sol.message
    assert sol.t.tolist() == [0.0, 0.1] and "step 2 (t = 0.1)" in sol.message and sol.feature_t[-1] == 0.1


def test_auto_on_an_activation_whose_derivative_is_nan_at_h0_names_the_activation():
    # regression: "the kernel M₀ ... overflows torch.float64 (tr M₀ = nan): check c_hat" — nothing overflowed
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    net = gf.Network(d=3, width=8, activation=_nan_activation(), seed=0)
    with pytest.raises(ValueError, match=r"σ′ of the activation 'tanh_nan_beyond_2' returned non-finite values"):
        gf.simulate(net, 30 * X, y, t1=1.0)


def test_gradient_descent_whose_loss_rises_warns_with_the_stability_limit():
    # a bounded σ keeps an unstable GD finite: tanh at δ = 30 bounced between 0.25 and 2.25, at δ = 1e6 it jumped to
    # 12 L₀ and stayed — both "success" without a word; the flow's loss never rises
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    net = gf.Network(d=3, width=8, seed=0)
    for step in (30.0, 1e6):
        with pytest.warns(gf.GFlowWarning, match=r"loss rose from .* exceeds GD's linear stability limit"):
            gd = gf.gradient_descent(net, X, y, step=step, steps=20, save_every=1)
        assert gd.status == "success" and "warning: the loss rose" in gd.message
        t0, L0, t, L = gd.stats["loss_rise"]
        assert L > L0 and t > t0
    quiet = gf.gradient_descent(net, X, y, step=30.0, steps=20, save_every=1, warn=False)   # (no warning: error)
    assert "warning: the loss rose" in quiet.message
    stable = gf.gradient_descent(net, X, y, step=0.5, steps=200, save_every=1)
    assert "loss_rise" not in stable.stats and "warning" not in stable.message


def test_gradient_descent_batch_warns_per_seed_where_the_loss_rises():
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    nets = gf.networks(range(2), d=3, width=8)
    with pytest.warns(gf.GFlowWarning, match=r"gradient_descent_batch: seed indices \[0, 1\].*loss rose"):
        sols = gf.gradient_descent_batch(nets, X, y, step=30.0, steps=20, save_every=1)
    assert all(s.status == "success" and "loss_rise" in s.stats for s in sols)
    single = gf.gradient_descent(nets[1], X, y, step=30.0, steps=20, save_every=1, warn=False)
    assert sols[1].stats["loss_rise"] == pytest.approx(single.stats["loss_rise"], rel=1e-9)



def test_a_rounding_level_wobble_at_the_ntk_equilibrium_is_not_a_loss_rise(monkeypatch):
    # (a numerics audit) the symmetrised NTK net with y = 0 starts at the equilibrium f ≡ 0, L ≈ 1e-32: GD warned that
    # the loss "rose" from 1.32e-32 to 1.40e-32 (rounding was measured against ‖f‖ ≈ 0, not against the sums' terms)
    # (on torch's sigmoid route for tanh, where the wobble was seen: gflow's native kernel rounds this one
    # monotonically)
    from gflow.model import activations

    monkeypatch.setattr(activations, "float64_tanh_route", lambda: "sigmoid")
    X, _ = gf.data.random_labels(n=10, d=8, seed=0)
    net = gf.Network(d=8, width=64, activation="tanh", scaling="ntk", seed=0)
    gd = gf.gradient_descent(net, X, np.zeros(10), step=1.0, steps=100, save_every=10, space="feature")
    assert gd.loss.max() < 1e-30 and np.any(np.diff(gd.loss) > 0)  # (the wobble is there)
    assert "loss_rise" not in gd.stats and "warning" not in gd.message
    nets = gf.networks(range(2), d=8, width=64, scaling="ntk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sols = gf.simulate_batch(nets, X, np.zeros(10), t1=5.0)
        assert all(s.ok and "warning" not in s.message and "loss_rise" not in s.stats for s in sols)
    # an adaptive batch's rise (forced here: no rounding allowance) is worded as one (it read "warning: None")
    from gflow.solve import _record

    monkeypatch.setattr(_record.Recorder, "_rounding", lambda self, loss, s: 0.0)
    with pytest.warns(gf.GFlowWarning, match="does not follow the flow there"):
        sols = gf.simulate_batch(nets, X, np.zeros(10), t1=5.0)
    assert all(s.ok and "None" not in s.message for s in sols)
    assert all("loss_rise" in s.stats for s in sols if "warning: the loss rose" in s.message)


@pytest.mark.parametrize("dtype, c_hat", [("float64", 1e100), ("float32", 1e15)])
def test_a_non_finite_run_advises_float64_only_where_it_is_not_float64(dtype, c_hat):
    # regression (a bad-input audit): float64 runs were told "use float64"
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    net = gf.Network(d=3, width=16, seed=0, dtype=dtype, c_hat=c_hat)
    for kw in (dict(method="dop853"), dict(method="rk4", step=0.1)):
        sol = gf.simulate(net, X, y, t1=1.0, warn=False, **kw)
        assert sol.status == "nonfinite" and "check the data scale" in sol.message
        assert ("use float64" in sol.message) == (dtype == "float32"), sol.message


def test_an_activation_that_is_nan_at_the_initial_features_is_named_not_an_overflow():
    # regression (a bad-input audit): "the data or the network overflow torch.float64 … use float64" for a float64
    # run whose features were finite and whose custom σ returned NaN beyond |u| > 3.5
    def sig(u):
        return torch.where(u.abs() > 3.5, torch.full_like(u, math.nan), torch.tanh(u))

    def dsig(u):
        return torch.where(u.abs() > 3.5, torch.full_like(u, math.nan), 1 - torch.tanh(u) ** 2)

    act = gf.Activation("nanny", sig, dsig, 1.0, (-1.0, 1.0))
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    with pytest.raises(ValueError, match=r"σ and σ′ of the activation 'nanny' returned non-finite values at the finite "
                                         r"initial features"):
        gf.simulate(gf.Network(d=3, width=16, seed=0, activation=act), 20 * X, y, t1=1.0, method="dop853")


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-12), ("float64", 1e-17)])
def test_an_rtol_below_the_dtypes_resolution_is_refused(dtype, rtol):
    # regression (a bad-input audit): float32 at rtol 1e-12 ran until it stalled, and the message blamed stiffness
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    net = gf.Network(d=3, width=16, seed=0, dtype=dtype)
    with pytest.raises(ValueError, match=rf"rtol={rtol:g} is below what torch.{dtype} resolves"):
        gf.simulate(net, X, y, t1=1.0, rtol=rtol, method="dop853")
    assert gf.simulate(net, X, y, t1=1.0, rtol=1e-6, method="dop853").ok


def test_contradicting_step_options_are_refused():
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    net = gf.Network(d=3, width=16, seed=0)
    with pytest.raises(ValueError, match=r"min_step = 0.1 and max_step = 0.001 contradict"):
        gf.simulate(net, X, y, t1=1.0, method="dop853", options={"max_step": 1e-3, "min_step": 0.1})


def test_a_tiny_atol_in_feature_space_is_not_a_collapse_at_the_first_step():
    # regression (a bad-input audit): A = ∫P starts at exactly 0, so atol alone scales it, and at atol = 1e-20 the
    # initial-step heuristic gave 4.8e-13 — below the collapse threshold: "step_size_collapse at t = 0 … check the
    # data", while weight space (W0 ≠ 0) ran
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    net = gf.Network(d=3, width=16, seed=0)
    feature = gf.simulate(net, X, y, t1=1.0, method="dop853", space="feature", atol=1e-20)
    weight = gf.simulate(net, X, y, t1=1.0, method="dop853", space="weight", atol=1e-20)
    assert feature.ok and abs(feature.loss[-1] / weight.loss[-1] - 1) < 1e-9


def test_atol_none_is_the_default_as_rtol_none_is():
    # atol=None was a TypeError ("atol must be a real number, got NoneType None") where rtol=None is the default
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    net = gf.Network(d=3, width=8, seed=0)
    a, b = (gf.simulate(net, X, y, t1=2.0, method="dop853", atol=atol) for atol in (None, 1e-9))
    assert np.array_equal(a.loss, b.loss) and a.config["solver"]["atol"] == 1e-9
    (c,), (d,) = (gf.simulate_batch([net], X, y, t1=2.0, atol=atol) for atol in (None, 1e-9))
    assert np.array_equal(c.loss, d.loss)
    with pytest.raises(TypeError, match="atol must be a real number"):
        gf.simulate(net, X, y, t1=2.0, atol="1e-9")


def test_lsoda_whose_steps_grow_late_is_not_stopped_as_stalled_and_stalls_advise_the_stiff_method():
    # (a numerics audit) the stall projection, after 200 steps, stopped LSODA at t = 65 of 1e6 — LSODA being what the
    # explicit methods' stall advised — though it finishes in ~1 100 steps; the advice now names dop853+exprk4
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    net = gf.Network(d=4, width=16, activation="tanh", seed=0)
    sol = gf.simulate(net, X, y, t1=1e6, method="LSODA", saveat=[0.0, 1e6])
    assert sol.ok and sol.stats["n_steps"] > 200
    stalled = gf.simulate(net, X, y, t1=1e6, method="dop853", saveat=[0.0, 1e6], warn=False, max_steps=1000)
    assert stalled.status == "stalled" and "method='dop853+exprk4'" in stalled.message
    assert "LSODA" not in stalled.message


def test_exprk4_out_of_time_is_not_told_the_explicit_methods_stiffness_advice():
    # (an interruption audit: "explicit methods run at their stability limit … try method='LSODA'" to exprk4)
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    sol = gf.simulate(gf.Network(d=3, width=16, seed=0), X, y, t1=5000.0, method="exprk4", rtol=1e-12,
                      max_wall_time=0.2, warn=False)
    assert sol.status == "time_budget" and "stability limit" not in sol.message and "exprk4 pays" in sol.message


def test_a_run_whose_saved_times_would_not_fit_in_memory_is_refused_up_front(monkeypatch):
    # regression (noticed in an audit): 1e7 saved GD steps at n = 5 held ~15 GB (1.5 kB each) and the process was
    # killed for memory hours in; the share is lowered here so that a small run stands for a huge one
    from gflow.solve import _record

    X, y = gf.data.random_labels(n=5, d=3, seed=0)
    net = gf.Network(d=3, width=8, seed=0)
    monkeypatch.setattr(_record, "ROW_MEMORY_SHARE", 1e-9)
    with pytest.raises(ValueError, match=r"1001 saved steps would hold about .* GiB in memory while the run records "
                                         r"them \(about 1.5 kB each\), more than 0% of this machine's .*; save less "
                                         r"often \(save_every > 1\)"):
        gf.gradient_descent(net, X, y, step=0.1, steps=1000, save_every=1)
    with pytest.raises(ValueError, match=r"output times \(saveat\) × 2 seeds .* give fewer output times"):
        gf.simulate_batch(gf.networks([0, 1], d=3, width=8), X, y, t1=1.0)
    with pytest.raises(ValueError, match=r"239 output times \(saveat\) would hold"):
        gf.simulate(net, X, y, t1=1.0)
    monkeypatch.setattr(_record, "ROW_MEMORY_SHARE", 0.5)
    assert gf.gradient_descent(net, X, y, step=0.1, steps=1000, save_every=1).ok


def test_the_memory_guard_counts_the_features_and_weights_kept_at_features_at_and_weights_at(monkeypatch):
    # (a new-user audit: features_at="all" over 20 001 times at m = 4 096 passed the guard, ran 36 s, then failed
    # on its 3 GiB stack; the guard counted the rows' scalars and residuals only)
    from gflow.solve import _record

    X, y = gf.data.random_labels(n=5, d=3, seed=0)
    net = gf.Network(d=3, width=64, seed=0)
    monkeypatch.setattr(_record, "_physical_memory", lambda: 2.0**20)  # a 1 MiB machine: 0.5 MiB allowed
    assert gf.simulate(net, X, y, t1=1.0, saveat=np.linspace(0, 1, 101), warn=False).ok  # rows alone: 0.15 MB
    # + 101 × 64 × 5 × 8 B × 2 = 0.52 MB of kept features: over the share
    with pytest.raises(ValueError, match=r"101 output times \(saveat\) would hold about .* of it the features and "
                                         r"weights kept at the features_at / weights_at times"):
        gf.simulate(net, X, y, t1=1.0, saveat=np.linspace(0, 1, 101), features_at="all", warn=False)
    wide = gf.Network(d=16, width=64, seed=0)  # W (64, 16) at 101 times: 1.65 MB
    X16, y16 = gf.data.random_labels(n=5, d=16, seed=0)
    with pytest.raises(ValueError, match=r"features and weights kept"):
        gf.gradient_descent(wide, X16, y16, step=0.01, steps=100, save_every=1, weights_at=np.linspace(0, 1, 101))


@pytest.mark.parametrize("dtype, advice", [(torch.float32, "use float64"), (torch.float64, None)])
def test_torchdiffeqs_non_finite_failure_becomes_a_status_with_advice(dtype, advice):
    # (a review: the message read an undefined name, so torchdiffeq's "non-finite" assertion became a NameError)
    from gflow.solve._record import Abort, Monitor
    from gflow.solve.ode import odeint_or_abort

    def failing(*args, **kwargs):
        raise AssertionError("non-finite values in state `y`")

    monitor = Monitor(1.0, 10, None, hint="", dtype=dtype)
    with pytest.raises(Abort) as info:
        odeint_or_abort(failing, None, None, None, "dopri8", 1e-7, 1e-9, {}, monitor)
    assert info.value.status == "nonfinite" and "tighter tolerances" in info.value.message
    assert (advice in info.value.message) if advice else "float64" not in info.value.message


def test_a_stall_far_below_the_stability_limit_is_called_accuracy_limited_not_stiff():
    # (a robustness audit: bosh3, fehlberg2 and adaptive_heun at rtol 1e-10 stalled with steps 3e3–4e5× below
    # 2/λ_max(M₀) and were told "the step size collapsed … the flow is mildly stiff: use dop853+exprk4")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((10, 5)), rng.standard_normal(10)
    net = gf.Network(d=5, width=32, activation="tanh", seed=0)
    sol = gf.simulate(net, X, y, t1=200.0, method="bosh3", rtol=1e-10, atol=1e-12, warn=False)
    assert sol.status == "stalled" and sol.t[-1] < 1.0
    assert "the steps stayed at about" in sol.message and "accuracy, not stiffness, holds them there" in sol.message
    assert "stiff at long horizons" not in sol.message
    assert "use a higher-order method (e.g. method='dop853'" in sol.message


def test_a_dop853_stall_on_an_undeclared_kink_is_not_told_to_use_dop853():
    # (a usability audit: σ = relu(u − 0.3) is kinked where gf.Activation's check does not look, so it counts as
    # smooth and dop853 runs; its stall advised "use a higher-order method (e.g. method='dop853' ...)")
    act = gf.Activation("shifted_relu", lambda u: torch.relu(u - 0.3), lambda u: (u > 0.3).to(u.dtype), 1.0,
                        (0.5, 2.0))
    assert act.smooth
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    sol = gf.simulate(gf.Network(d=4, width=16, activation=act, seed=0), X, y, t1=50.0, warn=False)
    assert sol.status == "stalled" and sol.config["solver"]["method"] == "dop853"
    assert "accuracy, not stiffness" in sol.message and "method='dop853'" not in sol.message
    assert "declare it with smooth=False" in sol.message


@pytest.mark.parametrize("method", ["torchdiffeq.dopri5", "bosh3"])
def test_a_torchdiffeq_run_stopped_by_max_steps_names_the_time_it_kept(method):
    # (their accept callback passes the step's start: the message named the step's end, one step past the
    # trajectory kept — t = 9.30 against 8.62)
    X, y = gf.data.random_labels(n=20, d=20, seed=0)
    net = gf.Network(d=20, width=64, activation="tanh", seed=0)
    sol = gf.simulate(net, X, y, t1=5000.0, method=method, max_steps=30, warn=False)
    assert sol.status == "max_steps" and f"t = {sol.t[-1]:.6g} < t1" in sol.message


@pytest.mark.parametrize("method", ["rk4", "euler", "dop853"])
def test_an_overflowing_network_is_a_value_error_naming_the_overflow_and_the_seed(method):
    # (an audit: c_hat = 1e200 overflows the kernel M₀; fixed-step runs then crashed with LAPACK's "eigh failed to
    # converge" while wording their step advice, and a batch named seed 0's finite loss 0.29 as "not finite")
    X, y = gf.data.random_labels(n=5, d=3, seed=0)
    big, good = gf.Network(d=3, width=8, seed=1, c_hat=1e200), gf.Network(d=3, width=8, seed=0)
    kw = {"method": method, "step": 0.1} if method != "dop853" else {"method": method}
    with pytest.raises(ValueError, match=r"the loss at t = 0 is not finite \(inf"):
        gf.simulate(big, X, y, t1=1.0, warn=False, **kw)
    with pytest.raises(ValueError, match=r"the loss at t = 0 is not finite \(inf.*seed index 1, network seed 1"):
        gf.simulate_batch([good, big], X, y, t1=1.0, warn=False, **kw)


def test_a_loss_not_finite_at_t0_is_diagnosed_there_without_the_mid_run_advice():
    # regression (an audit): "the loss at t = 0 is not finite (inf; the run stopped [nonfinite]: the loss or σ′
    # became non-finite at t = 0; the state was lost between t = 0 and t; use a smaller step or tighter tolerances)"
    # — no step was taken, "and t" was a placeholder, and the step advice does not apply
    X, y = gf.data.random_labels(n=8, d=6, seed=0)
    net = gf.Network(d=6, width=16, seed=0)

    def nan_beyond(u):
        return torch.where(u.abs() > 3.5, torch.full_like(u, math.nan), torch.tanh(u))

    nanny = gf.Activation("nanny", nan_beyond, lambda u: 1 - nan_beyond(u) ** 2, 1.0, (-1.0, 1.0))
    bad = gf.Network(d=6, width=16, seed=0, activation=nanny)
    big = gf.Network(d=6, width=16, seed=1, c_hat=1e200)
    targets = r"the loss at t = 0 is not finite \(inf\): the targets y overflow torch.float64 in the loss ½‖f − y‖² " \
        r"\(\|f\(0\)\| up to 0.151, \|y\| up to 4.41e\+199\); check the scale of y$"
    sigma = r"the loss at t = 0 is not finite \(nan\): σ and σ′ of the activation 'nanny' returned non-finite values"
    outputs = r"the loss at t = 0 is not finite \(inf\) \[seed index 1, network seed 1\]: the network's outputs " \
        r"f\(0\) = α σ\(H₀\)ᵀc overflow .*c_hat = 1e\+200.*check c_hat"
    for match, run in [
            (targets, lambda: gf.gradient_descent(net, X, y * 1e200, step=0.1, steps=10)),
            (targets, lambda: gf.simulate(net, X, y * 1e200, t1=1.0, method="dop853")),
            (targets, lambda: gf.simulate(net, X, y * 1e200, t1=1.0, method="euler", step=0.1)),
            (sigma, lambda: gf.gradient_descent(bad, 20 * X, y, step=0.1, steps=10)),
            (sigma, lambda: gf.simulate(bad, 20 * X, y, t1=1.0, method="rk4", step=0.1)),
            (outputs, lambda: gf.simulate_batch([net, big], X, y, t1=1.0, method="rk4", step=0.1, warn=False)),
            (outputs, lambda: gf.gradient_descent_batch([net, big], X, y, step=0.1, steps=5, warn=False))]:
        with pytest.raises(ValueError, match=match) as info:
            run()
        text = str(info.value)
        assert "run stopped" not in text and "state was lost" not in text and "smaller step" not in text, text


@pytest.mark.parametrize("method", ["Radau", "BDF"])
def test_an_implicit_scipy_method_stops_before_a_factorization_that_would_overrun_its_time_budget(method,
                                                                                                 monkeypatch):
    # (a long-run audit: Radau's dense LU factorizations run between two evaluations, where the budget is checked —
    # at a state of 6 000 entries its two took 17 s on one core, and a run given max_wall_time=8 ended after 31 s).
    # Each factorization is predicted from the last of its kind and not started where it would end past the budget.
    # A fake clock, not a timed test: every LU factorization takes 100 "seconds" of it, anything else none
    import scipy.integrate._ivp.bdf as bdf
    import scipy.integrate._ivp.radau as radau

    from gflow.solve import _record, ode

    clock = [0.0]
    monkeypatch.setattr(_record.Monitor, "elapsed", lambda self: clock[0])
    monkeypatch.setattr(ode, "time", type("FakeTime", (), {"perf_counter": staticmethod(lambda: clock[0])}))
    module = radau if method == "Radau" else bdf
    real_lu, started = module.lu_factor, []

    def slow_lu(*args, **kwargs):
        started.append(clock[0])
        clock[0] += 100.0
        return real_lu(*args, **kwargs)

    monkeypatch.setattr(module, "lu_factor", slow_lu)
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    net = gf.Network(d=4, width=8, seed=0)
    sol = gf.simulate(net, X, y, t1=50.0, method=method, max_wall_time=250.0, warn=False, integrals=False)
    assert sol.status == "time_budget", sol.message
    # (Radau: its complex factorization, predicted as 4× the real one before it; BDF: one like the last)
    predicted = "4e+02" if method == "Radau" else "1e+02"
    assert f"would run out during the next LU factorization (about {predicted} s)" in sol.message, sol.message
    assert started and all(t + 100.0 <= 250.0 for t in started)  # (none started that ended past the budget)
    assert sol.stats["wall_time"] <= 250.0
