"""gf.extend: a finished run continued to a longer horizon is the run to that horizon (gflow/solve/extend.py)."""

import numpy as np
import pytest

import gflow as gf

INTEGRALS = ("int_eta", "int_mu", "int_nu", "int_lam_min_M", "int_sqrt_abs_dL", "int_abs_dL")
MOVEMENTS = ("feature_movement", "kernel_movement", "weight_movement", "moved_fraction")


@pytest.fixture(scope="module")
def problem():
    X, y = gf.data.random_labels(n=10, d=20, seed=0)
    Xt, yt = gf.data.random_labels(n=15, d=20, seed=1)
    net = gf.Network(d=20, width=64, activation="tanh", seed=0)
    return net, X, y, Xt, yt


def _rows(sol, times):
    """Indices of ``times`` among sol.t (exactly)."""
    where = {t: i for i, t in enumerate(sol.t.tolist())}
    return [where[t] for t in times]


@pytest.mark.parametrize("space", ["weight", "feature"])
def test_gd_extended_equals_one_run_bit_for_bit(problem, space):
    net, X, y, Xt, yt = problem
    kw = dict(step=0.5, save_every=10, space=space, X_test=Xt, y_test=yt)
    a = gf.gradient_descent(net, X, y, steps=100, **kw)
    b = gf.extend(a, steps=150)
    c = gf.gradient_descent(net, X, y, steps=250, **kw)
    assert b.ok and b.kind == "gd"
    np.testing.assert_array_equal(b.t, c.t)  # (t = kδ: the joint saved once, times continuing)
    for name in ("loss", "residual", "output", "eta", "mu", "nu", "lam_min_M", "dL") + INTEGRALS + MOVEMENTS:
        if space == "feature" and name == "weight_movement":
            continue  # (formed from W_final there, not from the original's A = ∫P: below)
        np.testing.assert_array_equal(getattr(b, name), getattr(c, name), err_msg=name)
    if space == "weight":
        np.testing.assert_array_equal(b.W_final, c.W_final)
        np.testing.assert_array_equal(b.test_output, c.test_output)
    else:
        np.testing.assert_allclose(b.weight_movement, c.weight_movement, rtol=1e-13, atol=0)
        np.testing.assert_allclose(b.test_output, c.test_output, rtol=0, atol=1e-13 * np.abs(c.test_output).max())
    np.testing.assert_array_equal(b.features_at(125.0), c.features_at(125.0))
    assert b.feature_t.tolist() == [0.0, 50.0, 125.0]  # the original's kept features, then the continuation's end
    assert b.stats["n_f_evals"] == c.stats["n_f_evals"] == 250 and b.stats["n_steps"] == 250
    assert b.config["solver"]["steps"] == 250 and b.config["network"] == a.config["network"]
    seg = b.config["extended"]["segments"]
    assert len(seg) == 1 and seg[0]["from_t"] == 50.0 and seg[0]["from_step"] == 100 and seg[0]["steps"] == 150
    assert b.config["extended"]["base"]["steps"] == 100
    assert "extended from t = 50" in b.message and "to t = 125" in b.message


def test_fixed_step_flow_extended_equals_one_run(problem):
    net, X, y, Xt, yt = problem
    kw = dict(method="rk4", step=0.25, X_test=Xt, y_test=yt)
    a = gf.simulate(net, X, y, t1=10.0, **kw)
    b = gf.extend(a, t1=30.0)
    c = gf.simulate(net, X, y, t1=30.0, **kw)
    assert b.ok and b.t[-1] == 30.0 and np.all(np.diff(b.t) > 0)
    rb = _rows(b, c.t.tolist())  # (its default output times beyond t = 10 are the single run's)
    for name in ("loss", "residual", "test_output") + INTEGRALS + MOVEMENTS:
        u, v = getattr(b, name)[rb], getattr(c, name)
        np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-13 * np.abs(v).max(), err_msg=name)
    assert b.stats["n_f_evals"] == a.stats["n_f_evals"] + 4 * 80
    assert b.config["solver"]["t1"] == 30.0 and b.config["extended"]["segments"][0]["step"] == 0.25


def test_adaptive_flow_extended_within_tolerance_and_integrals_continue(problem):
    net, X, y, _, _ = problem
    rtol = 1e-8
    a = gf.simulate(net, X, y, t1=10.0, method="dop853", rtol=rtol)
    b = gf.extend(a, t1=40.0, saveat=[20.0, 30.0, 40.0])
    c = gf.simulate(net, X, y, t1=40.0, saveat=np.concatenate([a.t, [20.0, 30.0, 40.0]]), method="dop853",
                    rtol=rtol)
    assert b.ok and b.t[len(a.t) - 1:].tolist() == [10.0, 20.0, 30.0, 40.0]
    np.testing.assert_array_equal(b.t, c.t)
    np.testing.assert_array_equal(b.loss[:len(a.t)], a.loss)  # the original rows, unchanged
    assert np.max(np.abs(b.loss - c.loss) / c.loss) < 100 * rtol
    joint = len(a.t) - 1
    for name in INTEGRALS:  # the integrals continue: at the joint the original's final value, then growing
        u = getattr(b, name)
        assert u[joint] == getattr(a, name)[-1], name
        assert np.all(np.diff(u[joint:]) >= 0) and u[-1] > u[joint], name
    np.testing.assert_allclose(b.int_abs_dL[-1], b.loss[0] - b.loss[-1], rtol=1e-6)  # T2 from t = 0 (energy)
    np.testing.assert_allclose(b.weight_movement, c.weight_movement, rtol=1e-5)  # from W0, not from W(10)
    np.testing.assert_allclose(b.feature_movement, c.feature_movement, rtol=1e-5)
    np.testing.assert_allclose(b.kernel_movement[1:], c.kernel_movement[1:], rtol=1e-5)
    assert b.stats["n_f_evals"] > a.stats["n_f_evals"]
    cert = gf.certify(b)
    assert cert.ok, cert
    assert "t ∈ [0, 40]" in str(cert)


def test_saved_run_extends_as_in_memory_and_reruns(problem, tmp_path):
    net, X, y, _, _ = problem
    a = gf.simulate(net, X, y, t1=5.0, method="dop853", rtol=1e-8, features_at=[0.0, 2.0])  # (no features at t1)
    path = a.save(tmp_path / "a.nc")
    b1, b2 = gf.extend(a, t1=12.0), gf.extend(path, t1=12.0)
    for name in ("t", "loss", "residual", "H", "feature_t", "W_final") + INTEGRALS + MOVEMENTS:
        np.testing.assert_array_equal(getattr(b1, name), getattr(b2, name), err_msg=name)
    assert b1.feature_t.tolist() == [0.0, 2.0, 12.0]
    b1.save(tmp_path / "b.nc")
    loaded = gf.load(tmp_path / "b.nc")
    assert loaded.config["extended"] == b1.config["extended"]
    again = gf.rerun(tmp_path / "b.nc")  # the base run, then the continuation
    np.testing.assert_array_equal(again.t, b1.t)
    np.testing.assert_array_equal(again.loss, b1.loss)
    c = gf.extend(loaded, t1=20.0)  # twice
    assert c.ok and c.t[-1] == 20.0 and len(c.config["extended"]["segments"]) == 2
    assert c.config["extended"]["base"]["t1"] == 5.0


def test_run_stopped_by_a_limit_continues(problem):
    net, X, y, _, _ = problem
    a = gf.simulate(net, X, y, t1=10.0, method="dop853", rtol=1e-8, max_steps=4, warn=False)
    assert a.status == "max_steps" and a.t[-1] < 10.0
    b = gf.extend(a, t1=10.0, max_steps=10_000)
    c = gf.simulate(net, X, y, t1=10.0, method="dop853", rtol=1e-8)
    assert b.ok and b.t[-1] == 10.0 and "(max_steps)" in b.message
    assert abs(b.loss[-1] - c.loss[-1]) < 1e-6 * c.loss[-1]


def test_refusals(problem, tmp_path):
    net, X, y, _, _ = problem
    flow = gf.simulate(net, X, y, t1=2.0, method="rk4", step=0.25)
    gd = gf.gradient_descent(net, X, y, step=0.5, steps=10)
    with pytest.raises(ValueError, match=r"t1 must lie beyond the run's end t = 2 .*got t1 = 2"):
        gf.extend(flow, t1=2.0)
    with pytest.raises(TypeError, match=r"give t1="):
        gf.extend(flow)
    with pytest.raises(TypeError, match=r"flow .*give t1= .*not steps"):
        gf.extend(flow, steps=10)
    with pytest.raises(TypeError, match=r"gradient descent run .*give steps= .*not t1 .*steps=4"):
        gf.extend(gd, t1=7.0)
    with pytest.raises(TypeError, match=r"steps must be"):
        gf.extend(gd, steps=2.5)
    with pytest.raises(ValueError, match=r"saveat must lie in \(t\[-1\], t1\] = \(2, 4\]"):
        gf.extend(flow, t1=4.0, saveat=[1.0, 4.0])
    with pytest.raises(ValueError, match=r"features_at must lie in the continuation \(2, 4\]"):
        gf.extend(flow, t1=4.0, features_at=[0.0, 4.0])
    with pytest.raises(ValueError, match=r"'filippov' cannot be continued"):
        gf.extend(flow, t1=4.0, method="filippov")
    with pytest.raises(ValueError, match=r"'exprk4' cannot be continued.*method='dop853'"):
        gf.extend(flow, t1=4.0, method="exprk4")
    with pytest.raises(TypeError, match=r"source must be a gflow.Solution or the path"):
        gf.extend(3.0, t1=4.0)
    flow.save(tmp_path / "light.nc", include_weights=False)
    with pytest.raises(ValueError, match=r"saved without weights.*keep_weights.*gf.rerun"):
        gf.extend(tmp_path / "light.nc", t1=4.0)
    linear = gf.Network(d=20, width=64, activation="linear", seed=0)
    bad = gf.gradient_descent(linear, X, y, step=1e3, steps=50, warn=False)
    assert bad.status == "diverged"
    with pytest.raises(ValueError, match=r"status 'diverged'"):
        gf.extend(bad, steps=5)
    est = gf.simulate(net, X, y, t1=1.0, method="euler", step=0.25, error_estimate=True)
    with pytest.raises(ValueError, match=r"error estimate"):
        gf.extend(est, t1=2.0)


def test_float32_and_explicit_weights_without_integrals():
    X, y = gf.data.random_labels(n=10, d=20, seed=0)
    net = gf.Network(d=20, width=64, activation="tanh", seed=0, dtype="float32")
    a = gf.gradient_descent(net, X, y, step=0.5, steps=40, save_every=10, space="feature")
    b, c = gf.extend(a, steps=60), gf.gradient_descent(net, X, y, step=0.5, steps=100, save_every=10, space="feature")
    for name in ("t", "loss", "residual", "int_eta", "int_abs_dL", "feature_movement", "kernel_movement"):
        np.testing.assert_array_equal(getattr(b, name), getattr(c, name), err_msg=name)
    rng = np.random.default_rng(0)
    net = gf.Network(d=20, width=32, activation="tanh", c=np.sign(rng.standard_normal(32)),
                     W0=rng.standard_normal((32, 20)))
    kw = dict(method="rk4", step=0.25, integrals=False, space="weight")
    a = gf.simulate(net, X, y, t1=4.0, **kw)
    b, c = gf.extend(a, t1=8.0, features_at="all"), gf.simulate(net, X, y, t1=8.0, **kw)
    assert b.int_eta is None and b.config["solver"]["integrals"] is False
    for name in ("t", "loss", "weight_movement", "feature_movement", "kernel_movement", "W_final"):
        np.testing.assert_array_equal(getattr(b, name), getattr(c, name), err_msg=name)
    assert b.feature_t[:3].tolist() == [0.0, 4.0, 4.25] and b.feature_t[-1] == 8.0


def test_ctrl_c_in_the_continuation_keeps_the_extended_run(problem):
    from test_interrupt import sigint_at_eval

    net, X, y, _, _ = problem
    a = gf.gradient_descent(net, X, y, step=0.5, steps=100, save_every=10, space="weight")
    with sigint_at_eval(25), pytest.raises(gf.Interrupted) as info:
        gf.extend(a, steps=150)
    part = info.value.solution
    assert part.status == "interrupted" and part.t[0] == 0.0 and 50.0 < part.t[-1] < 125.0
    np.testing.assert_array_equal(part.loss[:len(a.t)], a.loss)
    assert "extended from t = 50" in part.message and part.config["extended"]["segments"][0]["status"] == "interrupted"
    k = int(round(part.t[-1] / 0.5))
    whole = gf.extend(part, steps=250 - k)  # (an interrupted run continues: the same GD, bit for bit)
    c = gf.gradient_descent(net, X, y, step=0.5, steps=250, save_every=10, space="weight")
    assert sorted(set(c.t) | {part.t[-1]}) == whole.t.tolist()  # (saved: the longer run's steps and the stop)
    same = np.isin(whole.t, c.t)
    for name in ("loss", "residual") + INTEGRALS + MOVEMENTS:
        np.testing.assert_array_equal(getattr(whole, name)[same], getattr(c, name), err_msg=name)


def _steep_problem():
    """A gelu net whose λ_max(M) grows by 1.5x over the first 20 steps: a step 0.7·2/λ_max(M₀) (GD) or
    0.7·2.785/λ_max(M₀) (rk4) is below the stability limit at t = 0 and past the joint's."""
    X, y = gf.data.random_labels(n=10, d=5, seed=2)
    net = gf.Network(d=5, width=32, activation="gelu", seed=2)
    lam0 = gf.gradient_descent(net, X, y, step=0.1, steps=1, save_every=1).lam_max_M[0]
    return net, X, y, lam0


def _tail(message):
    """A message after the extended run's "extended from t = ... (status): " prefix and its success text."""
    return message.split("; ", 1)[1]


@pytest.mark.parametrize("n1", [20, 50])
def test_gd_extended_judges_its_step_by_M0_and_words_its_rise_as_the_longer_run(n1):
    # (the continuation measured the stability limit from the joint's kernel — "δ = 0.991 exceeds 2/λ_max(M₀) =
    # 0.915", unstable_step True — and worded its loss rise in its own times; where the original had the rise, the
    # extended run's message and warning dropped it)
    net, X, y, lam0 = _steep_problem()
    kw = dict(step=0.7 * 2.0 / lam0, save_every=1)
    a = gf.gradient_descent(net, X, y, steps=n1, **kw, warn=False)  # (the rise, at step 36, is in a for n1 = 50)
    with pytest.warns(gf.GFlowWarning) as said_long:
        long = gf.gradient_descent(net, X, y, steps=2 * n1, **kw)
    with pytest.warns(gf.GFlowWarning) as said_ext:
        ext = gf.extend(a, steps=n1)
    np.testing.assert_array_equal(ext.loss, long.loss)
    assert ext.lam_max_M[n1] > 1.2 * ext.lam_max_M[0]  # (the joint's kernel is the steeper)
    assert ext.stats.get("unstable_step") == long.stats.get("unstable_step") is None
    assert ext.stats["loss_rise"] == long.stats["loss_rise"]
    assert _tail(ext.message) == _tail(long.message) and "2/λ_max(M₀) = 1.42" in ext.message
    # (the same warnings, named for what was called: "gflow.extend: the loss rose ...")
    assert [str(w.message) for w in said_ext] == [str(w.message).replace("gflow.gradient_descent", "gflow.extend", 1)
                                                  for w in said_long]


def test_fixed_step_flow_extended_judges_its_step_by_M0():
    net, X, y, lam0 = _steep_problem()
    h = 0.7 * 2.785 / lam0
    kw = dict(method="rk4", step=h, warn=False)
    a = gf.simulate(net, X, y, t1=20 * h, **kw)
    long = gf.simulate(net, X, y, t1=60 * h, **kw)
    ext = gf.extend(a, t1=60 * h, warn=False)
    np.testing.assert_array_equal(ext.loss, long.loss)
    assert ext.stats.get("unstable_step") == long.stats.get("unstable_step") is None
    assert ext.stats["loss_rise"] == long.stats["loss_rise"]
    assert _tail(ext.message) == _tail(long.message)


def test_saveat_as_a_count_or_times_and_save_every_choose_the_continuations_saved_times(problem):
    net, X, y, _, _ = problem
    a = gf.simulate(net, X, y, t1=10.0, method="dop853", rtol=1e-8)
    b = gf.extend(a, t1=50.0, saveat=4)  # (a count: was read as the single time 4, inside the run, and refused)
    assert b.ok and b.t[len(a.t) - 1:].tolist() == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert b.config["extended"]["segments"][0]["saveat"] == [20.0, 30.0, 40.0, 50.0]
    flow = gf.simulate(net, X, y, t1=2.0, method="rk4", step=0.25)
    c = gf.extend(flow, t1=4.0, saveat=3)  # (fixed step: on the continuation's multiples of it, t1 the last)
    assert c.t[len(flow.t) - 1:].tolist() == [2.0, 2.75, 3.25, 4.0]
    d = gf.extend(flow, t1=4.0, saveat=[2.5, 3.0])
    assert d.t[len(flow.t) - 1:].tolist() == [2.0, 2.5, 3.0, 4.0]
    gd = gf.gradient_descent(net, X, y, step=0.5, steps=10, save_every=2)
    e = gf.extend(gd, steps=10, save_every=3)  # (the whole run's multiples of 3, and the last step)
    assert e.t[len(gd.t) - 1:].tolist() == [5.0, 6.0, 7.5, 9.0, 10.0]
    with pytest.raises(TypeError, match=r"saveat must be times in \(2, t1\] or a count .*got bool True"):
        gf.extend(flow, t1=4.0, saveat=True)
    with pytest.raises(ValueError, match=r"saveat \(a count of output times\) must be an integer >= 1, got 0"):
        gf.extend(flow, t1=4.0, saveat=0)
    with pytest.raises(ValueError, match=r"saveat must lie in \(t\[-1\], t1\] = \(2, 4\].*a count of output times "
                                         r"is an int"):
        gf.extend(flow, t1=4.0, saveat=[2.0, 3.0])
    with pytest.raises(TypeError, match=r"not save_every; a flow's output times are saveat="):
        gf.extend(flow, t1=4.0, save_every=2)
    with pytest.raises(TypeError, match=r"not saveat; GD saves the steps that are multiples of save_every= "
                                        r"\(this run's: 2\)"):
        gf.extend(gd, steps=4, saveat=[6.0])


def test_the_continuations_warnings_and_ctrl_c_name_gf_extend(problem):
    from test_interrupt import sigint_at_eval

    net, X, y, _, _ = problem
    a = gf.simulate(net, X, y, t1=2.0, method="dop853")
    with pytest.warns(gf.GFlowWarning) as said:
        b = gf.extend(a, t1=40.0, max_steps=3)
    assert b.status == "max_steps"
    texts = [str(w.message) for w in said]
    assert len(texts) == 1 and texts[0].startswith("gflow.extend stopped early [max_steps]: extended from t = 2")
    assert "gflow.simulate" not in texts[0]
    gd = gf.gradient_descent(net, X, y, step=0.5, steps=20, save_every=10)
    with sigint_at_eval(5), pytest.raises(gf.Interrupted) as info:
        gf.extend(gd, steps=50)
    assert str(info.value).startswith("gf.extend: extended from t = 10 (success): interrupted by Ctrl-C")
    assert "gradient_descent" not in str(info.value) and info.value.solution.status == "interrupted"


def test_an_adaptive_continuations_loss_rise_is_checked_against_the_whole_runs_lowest_loss():
    # (the continuation compared its loss with its own lowest, from the joint on: where the run's saved loss had dipped
    # lower before the joint — within its tolerance — a rise above that the one-piece run reports went unreported)
    import dataclasses

    X, y = gf.data.random_labels(n=10, d=3, seed=0)
    net = gf.Network(d=3, width=16, activation="linear", seed=0)  # (n > d: a loss plateau, where RK45 wobbles)
    a = gf.simulate(net, X, y, t1=50.0, method="RK45", rtol=1e-3, warn=False)
    kw = dict(t1=100.0, method="RK45", rtol=1e-3, saveat=np.linspace(50.0, 100.0, 201)[1:])
    plain = gf.extend(a, **kw)  # (its rises, ~1e-8 relative, lie within rtol of the run's lowest loss: no warning)
    assert plain.ok and "loss_rise" not in plain.stats
    L = a.loss.copy()
    L[len(L) // 2] *= 1 - 1e-4  # (the run's saved loss had dipped 1e-4 lower: beyond the rises' 1e-6 allowance)
    dipped = dataclasses.replace(a, loss=L)
    with pytest.warns(gf.GFlowWarning, match=r"^gflow.extend: the loss rose from .* at t = 5\d.*method='RK45'"):
        b = gf.extend(dipped, **kw)
    t_prev, L_prev, t, L_rise = b.stats["loss_rise"]
    assert 50.0 <= t_prev < t and L_rise > L_prev and L_rise > L.min() * (1 + 1e-6)
    assert "warning: the loss rose from" in b.message and f"at t = {t:.6g}" in b.message


def test_a_checkpointed_continuation_resumes_to_the_uninterrupted_one(problem, tmp_path):
    from test_interrupt import sigint_at_eval

    net, X, y, Xt, yt = problem
    names = ("t", "loss", "residual", "test_output", "H", "feature_t", "W_final", "weight_movement") + INTEGRALS
    # a flow stopped by max_steps, then the same call with the limit raised
    a = gf.simulate(net, X, y, t1=10.0, method="dop853", rtol=1e-8, X_test=Xt, y_test=yt)
    whole = gf.extend(a, t1=60.0)
    ckpt = tmp_path / "ext.ckpt"
    part = gf.extend(a, t1=60.0, max_steps=5, checkpoint=ckpt, warn=False)
    assert part.status == "max_steps" and ckpt.is_file() and "the same call with a larger max_steps" in part.message
    again = gf.extend(a, t1=60.0, checkpoint=ckpt)
    assert again.ok and again.stats["resumed"] is True and not ckpt.exists()
    for name in names:
        np.testing.assert_array_equal(getattr(again, name), getattr(whole, name), err_msg=name)
    assert again.stats["n_f_evals"] == whole.stats["n_f_evals"] and again.config["extended"] == whole.config["extended"]
    # gradient descent stopped by Ctrl-C, then the same call
    gd = gf.gradient_descent(net, X, y, step=0.5, steps=100, save_every=10, X_test=Xt, y_test=yt)
    whole = gf.extend(gd, steps=150)
    with sigint_at_eval(40), pytest.raises(gf.Interrupted):
        gf.extend(gd, steps=150, checkpoint=ckpt)
    assert ckpt.is_file()
    again = gf.extend(gd, steps=150, checkpoint=ckpt)
    assert again.ok and again.stats["resumed"] is True
    for name in names:
        np.testing.assert_array_equal(getattr(again, name), getattr(whole, name), err_msg=name)
    # the checkpoint of one continuation resumes no other: another source, or the stopped result extended
    part = gf.extend(a, t1=60.0, max_steps=5, checkpoint=ckpt, warn=False)
    with pytest.raises(ValueError, match=r"written by a different run.*gf.extend resumes the same call"):
        gf.extend(part, t1=60.0, checkpoint=ckpt)


def test_a_stopped_continuation_advises_no_method_that_extend_refuses(problem):
    """A continuation stopped by max_steps on a long horizon is told the flow is stiff — and was told to "use
    method='dop853+exprk4'", which gf.extend refuses; it now says to run the flow from t = 0 with gf.simulate for
    it.  A plain gf.simulate run keeps the advice as it was."""
    net, X, y, _, _ = problem
    a = gf.simulate(net, X, y, t1=10.0, method="dop853")
    b = gf.extend(a, t1=5000.0, max_steps=400, warn=False)
    assert b.status == "max_steps" and "'dop853+exprk4'" in b.message
    assert "gf.extend does not continue with that method" in b.message and "gf.simulate" in b.message
    with pytest.raises(ValueError, match="exprk4"):  # (what it advised against: still refused)
        gf.extend(a, t1=5000.0, method="dop853+exprk4")
    c = gf.simulate(net, X, y, t1=5000.0, method="dop853", max_steps=400, warn=False)
    assert c.status == "max_steps" and "'dop853+exprk4'" in c.message and "gf.extend" not in c.message


def test_a_short_horizon_run_whose_last_kept_features_precede_its_end_goes_on_from_its_end():
    # (a run to t1 = 1e-12 — X, y × 1e6, the flow of X, y to t = 1 — keeping H at 0.97e-12: the continuation took
    # kept H within 1e-12·max(1, t) of the end as the end's and went on from them, the loss 3.7e-2 off the one-piece
    # run; and its saved times, matched to the output times within 1e-12·max(1, t), came out one output time early)
    rng = np.random.default_rng(0)
    s = 1e6
    X, y = s * rng.standard_normal((5, 4)), s * rng.standard_normal(5)
    net = gf.Network(4, 16, activation="linear", seed=0)
    grid = np.linspace(0.0, 2.0, 201)[1:] / s**2
    kw = dict(method="dop853", rtol=1e-10, space="feature")
    whole = gf.simulate(net, X, y, t1=grid[-1], saveat=grid, **kw)
    half = gf.simulate(net, X, y, t1=grid[99], saveat=grid[:100], features_at=[0.0, grid[96]], **kw)
    assert half.feature_t[-1] < half.t[-1]
    ext = gf.extend(half, t1=grid[-1], saveat=grid[100:])
    assert ext.ok and ext.t.shape == whole.t.shape
    np.testing.assert_allclose(ext.t, whole.t, rtol=1e-14)
    np.testing.assert_allclose(ext.loss, whole.loss, rtol=1e-7)
