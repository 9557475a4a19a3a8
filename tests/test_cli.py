"""The command line: demo, simulate (flags and TOML), show, rerun, and clean errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import gflow as gf
from gflow.cli import DEMO, load_config, main


def test_demo_configuration_is_experiment_1():
    assert DEMO["network"] == {"d": 20, "width": 1024, "activation": "tanh", "embedding": "identity",
                               "scaling": "ours", "seed": 0}
    assert DEMO["data"]["generator"] == "random_labels" and DEMO["data"]["n"] == 20
    assert DEMO["simulate"]["t1"] == 500.0


def test_a_checkpointed_run_whose_result_cannot_be_saved_resumes_from_its_checkpoint(tmp_path, capsys, monkeypatch):
    # regression: gf.simulate deleted the checkpoint of the finished run before the command saved its result; a save
    # that failed (a full disk) lost the run whole, and the same command ran it again from t = 0
    import errno

    config = tmp_path / "run.toml"
    ckpt = tmp_path / "run.ckpt"
    config.write_text(f'[network]\nd = 5\nwidth = 16\n[simulate]\nt1 = 20.0\nmethod = "dop853"\n'
                      f'checkpoint = "{ckpt.as_posix()}"\n')
    out = tmp_path / "out.nc"
    with monkeypatch.context() as mp:
        mp.setattr(gf.Solution, "save", lambda self, *a, **k: (_ for _ in ()).throw(
            OSError(errno.ENOSPC, "No space left on device")))
        assert main(["simulate", str(config), "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert ckpt.is_file() and not out.exists()
    assert main(["simulate", str(config), "--out", str(out)]) == 0
    sol = gf.load(out)
    assert sol.ok and sol.stats["resumed"] is True  # (the whole run, from its final checkpoint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nc", "run.toml"]  # (deleted once saved)


def test_simulate_from_flags_writes_a_loadable_file(tmp_path, capsys):
    out = tmp_path / "run.nc"
    rc = main(["simulate", "--d", "5", "--width", "16", "--n", "4", "--t1", "2", "--method", "rk4", "--step",
               "0.1", "--n-test", "7", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "status: success" in text and "wrote" in text
    sol = gf.load(out)
    assert sol.ok and sol.t[-1] == pytest.approx(2.0) and sol.X_test.shape == (7, 5)
    assert sol.config["solver"]["method"] == "rk4" and sol.config["network"]["width"] == 16


def test_simulate_with_error_estimate_saves_the_estimate_and_refuses_it_for_gradient_descent(tmp_path, capsys):
    out = tmp_path / "run.nc"
    rc = main(["simulate", "--d", "5", "--width", "16", "--n", "4", "--t1", "5", "--method", "dop853",
               "--error-estimate", "--out", str(out)])
    assert rc == 0 and "estimated relative loss error ≤" in capsys.readouterr().out
    sol = gf.load(out)
    assert sol.error_estimate is not None and sol.error_estimate.shape == sol.t.shape
    assert "second solve of dop853" in sol.config["solver"]["error_estimate"]["scheme"]
    rc = main(["simulate", "--d", "5", "--width", "16", "--kind", "gradient_descent", "--step", "0.1",
               "--error-estimate", "--out", str(tmp_path / "gd.nc")])
    assert rc == 2 and "--error-estimate is not for --kind gradient_descent" in capsys.readouterr().err
    rc = main(["simulate", "--d", "5", "--width", "16", "--t1", "5", "--method", "dopri5", "--error-estimate",
               "--out", str(tmp_path / "x.nc")])
    assert rc == 2 and "does not take method='dopri5'" in capsys.readouterr().err


def test_simulate_from_toml_matches_the_python_api(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'd = 6\nwidth = 32\nactivation = "erf"\nembedding = { kind = "random_features", D = 24 }\n'
        'scaling = "ours"\nseed = 3\nt1 = 3.0\nmethod = "dopri5"\nrtol = 1e-9\natol = 1e-11\n'
        '[data]\ngenerator = "random_labels"\nn = 5\nseed = 2\n'
    )
    out = tmp_path / "run.nc"
    assert main(["simulate", str(cfg), "--out", str(out)]) == 0
    sol = gf.load(out)
    X, y = gf.data.random_labels(5, 6, seed=2)
    net = gf.Network(d=6, width=32, activation="erf", embedding=gf.RandomFeatures(D=24), seed=3)
    ref = gf.simulate(net, X, y, t1=3.0, method="dopri5", rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(sol.loss, ref.loss, rtol=1e-12)


def test_flags_override_the_toml_file(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[network]\nd = 4\nwidth = 8\n[simulate]\nt1 = 1.0\n[data]\nn = 3\n")
    out = tmp_path / "o.nc"
    assert main(["simulate", str(cfg), "--width", "12", "--out", str(out)]) == 0
    assert gf.load(out).m == 12


def test_step_none_drops_the_files_step_for_an_adaptive_method(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[network]\nd = 3\nwidth = 8\n[simulate]\nt1 = 1.0\nmethod = "rk4"\nstep = 0.1\n[data]\nn = 5\n')
    out = tmp_path / "o.nc"
    # an adaptive --method over a file with a step: told how to drop it, before any run
    assert main(["simulate", str(cfg), "--method", "dop853", "--out", str(out)]) == 2
    assert "add --step none to drop the file's step" in capsys.readouterr().err and not out.exists()
    assert main(["simulate", str(cfg), "--method", "dop853", "--step", "none", "--out", str(out)]) == 0
    sol = gf.load(out)
    assert sol.config["solver"]["method"] == "dop853" and sol.ok
    assert main(["simulate", str(cfg), "--method", "euler", "--out", str(out)]) == 0  # a fixed step keeps it
    assert gf.load(out).config["solver"]["step"] == 0.1
    with pytest.raises(SystemExit) as stop:  # (argparse's usage error)
        main(["simulate", str(cfg), "--step", "big", "--out", str(out)])
    assert stop.value.code == 2
    assert "expected a number or 'none', got 'big'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, needle",
    [
        ("d = 4\nwidth = 8\nbogus = 1\n", "unknown key 'bogus'"),
        ("[network]\nd = 4\nwidht = 8\n", "unknown key(s) ['widht']"),
        ("d = 4\nwidth = ", "invalid TOML"),
        # regression: the [network] value won silently
        ("d = 3\nwidth = 8\nt1 = 1.0\n[network]\nwidth = 16\n[data]\nn = 6\n",
         "'width' is given both at top level (8) and in [network] (16); keep one"),
        ("d = 3\nwidth = 8\nt1 = 1.0\n[simulate]\nt1 = 2.0\n", "'t1' is given both at top level (1.0) and in "
         "[simulate] (2.0); keep one"),
    ],
)
def test_bad_config_files_are_reported_with_the_key(tmp_path, capsys, content, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    assert main(["simulate", str(cfg)]) == 2
    assert needle in capsys.readouterr().err


def test_bad_flags_exit_2_with_a_message_not_a_traceback(capsys):
    assert main(["simulate", "--d", "4", "--width", "8", "--t1", "1", "--method", "rk4", "--n", "3"]) == 2
    err = capsys.readouterr().err
    assert "needs an explicit step" in err and "Traceback" not in err
    assert main(["simulate", "--d", "4", "--width", "8", "--t1", "1", "--activation", "swish"]) == 2
    assert "unknown activation 'swish'" in capsys.readouterr().err
    assert main(["simulate", "--d", "4", "--width", "8", "--t1", "1", "--embedding", "random_features:x"]) == 2
    assert main(["simulate", "--d", "4", "--t1", "1"]) == 2
    capsys.readouterr()
    assert main(["simulate", "--d", "4", "--width", "8", "--t1", "1", "--n-test", "-1"]) == 2
    assert "n_test (--n-test) must be an integer >= 0 (0: no test data), got -1" in capsys.readouterr().err
    assert load_config is not None


def test_show_and_rerun_a_saved_file(tmp_path, capsys):
    out = tmp_path / "a.nc"
    assert main(["simulate", "--d", "4", "--width", "8", "--n", "3", "--t1", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    assert "status: success" in capsys.readouterr().out
    again = tmp_path / "b.nc"
    assert main(["rerun", str(out), "--out", str(again)]) == 0
    np.testing.assert_allclose(gf.load(again).loss, gf.load(out).loss, rtol=1e-13)
    assert main(["show", str(tmp_path / "missing.nc")]) == 2


def test_show_and_plot_of_an_experiment_file_say_what_it_is_and_how_to_open_a_run(tmp_path, capsys):
    from gflow.experiments import Run, save_runs

    one = tmp_path / "a.nc"
    assert main(["simulate", "--d", "4", "--width", "8", "--n", "3", "--t1", "1", "--out", str(one)]) == 0
    path = save_runs(tmp_path / "exp2" / "runs.nc", [Run({}, gf.load(one))], experiment="exp2", preset="tiny",
                     config={})
    capsys.readouterr()
    for command in ("show", "plot", "certify"):
        assert main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert "is a gflow experiment file" in err and "group='run000'" in err and "load_runs" in err, command
        assert "runs/<id>.nc" in err


def test_every_subcommand_help_describes_its_flags_with_defaults_and_an_example(capsys):
    commands = ("demo", "simulate", "show", "certify", "plot", "reproduce", "sweep", "rerun", "extend", "bench")
    for command in commands:
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "example" in text and f"gflow {command} " in text.split("example")[-1], command
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--t1 T1 final flow time (required", "--width WIDTH number of neurons m (required",
                   "(default: tanh", "leaky_relu", "(default: auto", "filippov",
                   "(default: 1e-7 in float64, 1e-5 in float32)", "(default: 1e-09)", "(default: 100000)",
                   "(default: random_labels)", "(default: 20)"):
        assert needle in text, needle
    with pytest.raises(SystemExit):
        main(["show", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--rows ROWS rows of the loss table (0: no table, the status and statistics only) (default: 12)" in text
    assert "file a run file" in text


def test_python_dash_m_gflow_runs():
    r = subprocess.run([sys.executable, "-m", "gflow", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("gflow ")


def test_certify_and_plot_commands_on_a_saved_run(tmp_path, capsys):
    out = tmp_path / "a.nc"
    assert main(["simulate", "--d", "6", "--width", "16", "--n", "4", "--t1", "2", "--rtol", "1e-10",
                 "--atol", "1e-12", "--n-test", "5", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["certify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Certificate (flow): OK" in text and "T11" in text
    png = tmp_path / "summary.png"
    assert main(["plot", str(out), "--out", str(png)]) == 0
    assert png.stat().st_size > 20_000


def test_cli_says_why_an_embedding_or_a_test_seed_cannot_run(tmp_path, capsys):
    # regression (a bad-input audit): "random_features:0" gave only "not understood" (the reason was swallowed), and
    # [data] test_seed = -1 was reported as "seed must be an integer >= 0"
    assert main(["simulate", "--d", "4", "--width", "8", "--t1", "1", "--embedding", "random_features:0"]) == 2
    assert "RandomFeatures D must be an integer >= 1, got 0" in capsys.readouterr().err
    cfg = tmp_path / "ts.toml"
    cfg.write_text("d = 3\nwidth = 8\nt1 = 1.0\n[data]\nn = 4\nn_test = 4\ntest_seed = -1\n")
    assert main(["simulate", str(cfg)]) == 2
    assert "test_seed ([data] test_seed) must be an integer >= 0, got -1" in capsys.readouterr().err


def test_an_embedding_dict_with_an_unknown_key_lists_the_accepted_ones():
    with pytest.raises(ValueError, match=r"does not take \['seeds'\] .*accepted keys: \['kind', 'D', 'activation', "
                                         r"'seed'\]"):
        gf.get_embedding({"kind": "random_features", "D": 8, "seeds": 1})


def test_the_summary_of_a_switching_run_that_stopped_early_does_not_say_it_reached_t1():
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    sol = gf.simulate(gf.Network(d=3, width=16, seed=0), X, y, t1=5000.0, method="dop853+exprk4", max_steps=5,
                      warn=False)
    assert sol.status == "max_steps" and sol.stats["switch_time"] is None
    text = sol.summary()
    assert "until it stopped at t = " in text and "to t1 (no hand-over)" not in text


@pytest.mark.parametrize("figure, why", [("x.xyz", "--figure must end in .png or .pdf, got 'x.xyz'"),
                                         ("x.gif", "--figure must end in .png or .pdf")])
def test_demo_checks_its_figure_path_before_the_run(tmp_path, capsys, monkeypatch, figure, why):
    # (a new-user audit: `gflow demo --figure x.xyz` ran the whole demo, wrote the run, then failed on the format)
    import gflow.cli as cli

    monkeypatch.setattr(cli, "run_config", lambda cfg: pytest.fail("the demo ran before its figure path was checked"))
    assert main(["demo", "--out", str(tmp_path / "d.nc"), "--figure", str(tmp_path / figure)]) == 2
    assert why in capsys.readouterr().err and not (tmp_path / "d.nc").exists()


@pytest.mark.parametrize("device, why", [("gpu", "device must be a torch device or a string like 'cpu' or 'cuda'"),
                                         pytest.param("cuda", "CUDA is not available", marks=pytest.mark.skipif(
                                             __import__("torch").cuda.is_available(), reason="a GPU is here"))])
def test_reproduce_checks_the_device_before_any_run_or_folder(tmp_path, capsys, device, why):
    # (a new-user audit: `--device gpu` ended in torch's traceback, `--device cuda` in a chained one after
    # out/exp1 was made)
    assert main(["reproduce", "exp1", "--preset", "tiny", "--device", device, "--out", str(tmp_path / "r")]) == 2
    assert why in capsys.readouterr().err and not (tmp_path / "r").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is here")
def test_reproduce_on_a_local_dask_cluster_checks_cuda_here(tmp_path):
    # (a review: dask without a scheduler starts its workers on this machine, but the CUDA check skipped it)
    from gflow.experiments import reproduce

    with pytest.raises(ValueError, match="CUDA is not available"):
        reproduce("exp1", "tiny", tmp_path / "r", device="cuda", executor="dask", workers=1)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------------------
# A CLI audit: output paths checked before the work, pipes, the summary's wording


def test_an_unwritable_out_or_figure_is_refused_before_the_run_naming_the_option(tmp_path, capsys):
    # (--out /proc/x.nc ran the whole flow, then failed naming a temporary file; --figure after the 20 s demo)
    assert main(["simulate", "--d", "3", "--width", "8", "--n", "4", "--t1", "1", "--out", "/proc/x.nc"]) == 2
    cap = capsys.readouterr()
    assert "--out: cannot write '/proc/x.nc'" in cap.err and "loss" not in cap.out  # (no table: nothing ran)
    assert main(["demo", "--out", str(tmp_path / "d.nc"), "--figure", "/proc/x.png"]) == 2
    cap = capsys.readouterr()
    assert "--figure: cannot write" in cap.err and not (tmp_path / "d.nc").exists()
    with pytest.raises(ValueError, match="path: cannot write"):
        gf.simulate(gf.Network(d=3, width=8, seed=0), *gf.data.random_labels(n=4, d=3), t1=0.1).save("/proc/x.nc")


def test_reproduce_into_an_existing_file_or_with_no_workers_is_refused_before_any_folder_is_made(tmp_path, capsys):
    # (an existing file as --out: a NotADirectoryError traceback; --workers 0 left out/exp1/runs/ behind)
    f = tmp_path / "ok.nc"
    f.write_text("x")
    assert main(["reproduce", "exp1", "--preset", "tiny", "--out", str(f)]) == 2
    assert "--out must be an output folder" in capsys.readouterr().err
    assert main(["reproduce", "exp1", "--preset", "tiny", "--workers", "0", "--out", str(tmp_path / "rp")]) == 2
    assert "workers must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "rp").exists()


def test_output_piped_into_head_ends_quietly(tmp_path):
    # (`gflow certify run.nc | head -3` printed its lines, then a BrokenPipeError traceback)
    out = tmp_path / "a.nc"  # (a table of 4 000 rows, 170 kB: more than a pipe holds once head has gone)
    gf.simulate(gf.Network(d=3, width=8, seed=0), *gf.data.random_labels(n=4, d=3), t1=1.0,
                saveat=np.linspace(0.0, 1.0, 4000)).save(out)
    r = subprocess.run(f"{sys.executable} -m gflow show {out} --rows 4000 | head -1", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.strip() and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_plot_does_not_replace_the_demos_figure(tmp_path, capsys):
    # (`gflow plot gflow-demo.nc` wrote gflow-demo.png over the demo's loss-vs-bounds figure)
    out = tmp_path / "run.nc"
    assert main(["simulate", "--d", "3", "--width", "8", "--n", "4", "--t1", "1", "--out", str(out)]) == 0
    (tmp_path / "run.png").write_bytes(b"the demo's figure")
    assert main(["plot", str(out)]) == 0
    assert (tmp_path / "run.png").read_bytes() == b"the demo's figure" and (tmp_path / "run-summary.png").exists()
    assert main(["plot", str(out), "--out", str(tmp_path)]) == 2
    assert "--out must be a file path" in capsys.readouterr().err


def test_the_summary_says_what_its_counts_and_columns_are():
    X, y = gf.data.random_labels(n=4, d=3)
    Xt, yt = gf.data.random_labels(n=4, d=3, seed=3)
    net = gf.Network(d=3, width=8, seed=0)
    scipy_run = gf.simulate(net, X, y, t1=2.0, method="RK45", X_test=Xt, y_test=yt).summary(rows=1)
    assert "(-1 rejected)" not in scipy_run and "scipy does not report rejections" in scipy_run
    assert "test MSE" in scipy_run and "test error" not in scipy_run  # (the mean squared error, not a 0–1 rate)
    table = scipy_run.splitlines()
    assert len(table) == 4 and table[1].split()[0] == "2"  # rows=1: the last row (the final loss), not t = 0
    no_handover = gf.simulate(net, X, y, t1=2.0, method="dop853+exprk4").summary(rows=0)
    assert no_handover.splitlines()[1].startswith("dop853+exprk4 in weight space")  # (nothing ran in feature space)
    gd = gf.gradient_descent(net, X, y, steps=4, step=0.5).summary(rows=2)
    assert gd.splitlines()[0].split()[:3] == ["t", "=", "kδ"] and "rejected" not in gd
    assert "test 0-1 err" not in scipy_run  # (uniform labels: no sign error)
    Xs, ys = gf.data.wei2019(n=6, d=3, seed=0)  # ±1 labels: the 0–1 error beside the MSE
    signed = gf.simulate(net, X, y, t1=2.0, X_test=Xs, y_test=ys)
    head, row = signed.summary(rows=1).splitlines()[:2]
    assert head.split()[-3:] == ["test", "0-1", "err"]
    assert abs(float(row.split()[-1]) - signed.test_sign_error[-1]) < 1e-3


def test_an_existing_output_folder_is_probed_itself_not_its_parent(tmp_path):
    # (a review: --out $HOME, whose parent a user cannot write, was refused; a read-only folder below a writable
    # one was accepted) — as root every folder is writable, so the probe is watched instead
    from gflow import solution

    probed = []
    real = solution._check_writable
    out = tmp_path / "out"
    out.mkdir()
    try:
        solution._check_writable = lambda folder, p, name: probed.append(folder) or real(folder, p, name)
        solution.check_output_path(out, "--out", folder=True)
        solution.check_output_path(tmp_path / "new" / "deeper", "--out", folder=True)
        solution.check_output_path(out / "run.nc", "--out")
    finally:
        solution._check_writable = real
    assert probed == [out, tmp_path, out]


# ---------------------------------------------------------------------------------------------------------
# A usability audit: gradient descent from the command line, the sweep's TOML spelling, CLI spelling in errors


def test_simulate_runs_gradient_descent_that_show_and_compare_read_against_the_flow(tmp_path, capsys):
    # (the README's `gflow compare gd.nc flow.nc` had no command line to make gd.nc)
    common = ["--d", "6", "--width", "16", "--n", "5", "--n-test", "4", "--seed", "2"]
    flow, gd = tmp_path / "flow.nc", tmp_path / "gd.nc"
    assert main(["simulate", *common, "--t1", "2", "--out", str(flow)]) == 0
    assert main(["simulate", *common, "--kind", "gradient_descent", "--step", "0.25", "--steps", "8", "--save-every",
                 "2", "--out", str(gd)]) == 0
    assert "took 8 steps of size 0.25" in capsys.readouterr().out
    sol = gf.load(gd)
    X, y = gf.data.random_labels(5, 6, seed=0)
    Xt, yt = gf.data.random_labels(4, 6, seed=1)
    ref = gf.gradient_descent(gf.Network(d=6, width=16, seed=2), X, y, step=0.25, steps=8, save_every=2, X_test=Xt,
                              y_test=yt)
    assert sol.kind == "gd" and sol.ok and sol.config["solver"]["step"] == 0.25
    np.testing.assert_allclose(sol.t, [0, 0.5, 1, 1.5, 2])
    np.testing.assert_allclose(sol.loss, ref.loss, rtol=1e-12)
    assert main(["show", str(gd)]) == 0 and "t = kδ" in capsys.readouterr().out
    assert main(["compare", str(gd), str(flow)]) == 0
    assert "GD δ = 0.25 against" in capsys.readouterr().out
    assert main(["rerun", str(gd), "--out", str(tmp_path / "again.nc")]) == 0


def test_simulate_reads_the_sweeps_solver_table_kind_and_generator_keywords(tmp_path):
    # (`kind = "gradient_descent"`, a [solver] table and `[data] teacher_width = 3` were unknown keys, while a sweep
    # file (docs/sweep.toml) spells a run so)
    cfg, out = tmp_path / "run.toml", tmp_path / "run.nc"
    cfg.write_text('[network]\nd = 4\nwidth = 8\n[solver]\nkind = "gradient_descent"\nstep = 0.5\nsteps = 6\n'
                   'save_every = 3\n[data]\ngenerator = "quadratic_teacher"\nn = 5\nteacher_width = 3\n')
    assert main(["simulate", str(cfg), "--out", str(out)]) == 0
    X, y = gf.data.quadratic_teacher(5, 4, seed=0, teacher_width=3)
    ref = gf.gradient_descent(gf.Network(d=4, width=8), X, y, step=0.5, steps=6, save_every=3)
    np.testing.assert_allclose(gf.load(out).loss, ref.loss, rtol=1e-12)
    cfg.write_text('d = 4\nwidth = 8\nkind = "gradient_descent"\nsteps = 4\n[data]\nn = 3\n')  # (top level)
    assert main(["simulate", str(cfg), "--step", "0.1", "--out", str(out)]) == 0
    assert gf.load(out).kind == "gd" and gf.load(out).t[-1] == pytest.approx(0.4)
    cfg.write_text('d = 4\nwidth = 8\n[solver]\nkind = "simulate"\nt1 = 1.0\n[data]\nn = 3\n')
    assert main(["simulate", str(cfg), "--out", str(out)]) == 0 and gf.load(out).kind == "flow"


@pytest.mark.parametrize("content, args, needle", [
    ('d = 3\nwidth = 8\n[solver]\nt1 = 1.0\n[simulate]\nrtol = 1e-6\n', [], "[solver] or [simulate], not both"),
    ('d = 3\nwidth = 8\nkind = "newton"\n', [], "kind = 'newton'; expected one of ['simulate', 'gradient_descent']"),
    ('d = 3\nwidth = 8\n[solver]\nkind = "simulate"\nsteps = 5\n', [],
     "unknown key(s) ['steps'] in [solver] ('steps' is for kind = 'gradient_descent', not 'simulate')"),
    ('d = 3\nwidth = 8\nt1 = 1.0\n[data]\nteacher_width = 3\n', ["--data", "wei2019"],
     "[data] key(s) ['teacher_width'] are not keywords of the generator 'wei2019'"),
    ('d = 3\nwidth = 8\nt1 = 1.0\n', ["--kind", "gradient_descent"], "gives 't1', not a keyword of "
     "gf.gradient_descent (--kind gradient_descent) ('t1' is for kind = 'simulate', not 'gradient_descent')"),
    ('d = 3\nwidth = 8\n', ["--kind", "gradient_descent", "--t1", "3", "--rtol", "1e-6"],
     "--t1, --rtol are not for --kind gradient_descent: gradient descent (--kind gradient_descent) runs --steps"),
    ('d = 3\nwidth = 8\nt1 = 1.0\n', ["--steps", "3"], "--steps is not for --kind simulate (the default): --steps "
     "and --save-every are for gradient descent"),
])
def test_simulate_says_which_solver_a_key_or_flag_belongs_to(tmp_path, capsys, content, args, needle):
    cfg = tmp_path / "run.toml"
    cfg.write_text(content)
    assert main(["simulate", str(cfg), *args, "--out", str(tmp_path / "o.nc")]) == 2
    assert needle in capsys.readouterr().err and not (tmp_path / "o.nc").exists()


def test_gradient_descent_from_the_cli_saves_a_failed_or_interrupted_run_as_the_flow_does(tmp_path, capsys):
    from test_interrupt import sigint_at_eval

    out = tmp_path / "gd.nc"
    gd = ["simulate", "--d", "4", "--width", "8", "--n", "6", "--kind", "gradient_descent", "--out", str(out)]
    assert main([*gd, "--activation", "linear", "--step", "1000", "--steps", "50", "--save-every", "10"]) == 1
    assert "status: diverged" in capsys.readouterr().out and gf.load(out).status == "diverged"
    with sigint_at_eval(50):
        assert main([*gd, "--step", "0.1", "--steps", "100000"]) == 130
    captured = capsys.readouterr()
    assert "gflow: interrupted: " in captured.err and "the run up to the Ctrl-C" in captured.out
    sol = gf.load(out)
    assert sol.status == "interrupted" and sol.kind == "gd" and 0 < sol.t[-1] < 10_000


def test_errors_about_simulate_arguments_name_their_flags(tmp_path, capsys):
    # (`--method rk4` without a step was told "e.g. step=0.01", a keyword the command line cannot take)
    base = ["simulate", "--d", "3", "--width", "8", "--n", "4", "--out", str(tmp_path / "o.nc")]
    assert main([*base, "--t1", "1", "--method", "rk4"]) == 2
    err = capsys.readouterr().err
    assert "needs an explicit step, e.g. --step 0.01 " in err and "step=" not in err
    assert main([*base, "--t1", "1", "--method", "dop853", "--step", "0.1"]) == 2
    assert "--step 0.1 was given but method 'dop853' is adaptive" in capsys.readouterr().err
    assert main([*base, "--t1", "1", "--method", "rk4", "--step", "0.001", "--max-steps", "10"]) == 2
    assert "more than --max-steps 10; raise --max-steps or enlarge --step" in capsys.readouterr().err
    assert main([*base, "--kind", "gradient_descent", "--save-every", "0"]) == 2
    assert "--save-every must be an integer >= 1, got 0" in capsys.readouterr().err
    # a value the TOML file gave is named by its key, not by a flag that was never typed; a typed flag still wins
    cfg = tmp_path / "run.toml"
    cfg.write_text("d = 3\nwidth = 8\n[solver]\nt1 = 1.0\nrtol = 1e-20\n[data]\nn = 4\n")
    out = ["--out", str(tmp_path / "o.nc")]
    assert main(["simulate", str(cfg), *out]) == 2
    err = capsys.readouterr().err
    assert "rtol=1e-20 is below what torch.float64 resolves" in err and "--rtol" not in err
    assert main(["simulate", str(cfg), "--rtol", "1e-19", *out]) == 2
    assert "--rtol 1e-19 is below what torch.float64 resolves" in capsys.readouterr().err
    assert main(["simulate", str(cfg), "--method", "rk4", *out]) == 2  # (missing everywhere: the flag to add)
    assert "e.g. --step 0.01 " in capsys.readouterr().err
    # the Python API keeps its keywords
    with pytest.raises(ValueError, match=r"e\.g\. step=0\.01 "):
        gf.simulate(gf.Network(d=3, width=8), *gf.data.random_labels(4, 3), t1=1.0, method="rk4")


def test_reproduce_lists_every_file_it_writes_figures_too(tmp_path, capsys, monkeypatch):
    from gflow.experiments.common import ExperimentResult

    exp = tmp_path / "r" / "exp1"
    files = [exp / "runs.nc", exp / "figure1.png", exp / "figure1.pdf", exp / "summary.md"]
    monkeypatch.setattr("gflow.experiments.reproduce",
                        lambda *a, **k: [ExperimentResult("exp1", "tiny", [], [], files, 1.0)])
    assert main(["reproduce", "exp1", "--preset", "tiny", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert all(f"  wrote {f}\n" in out for f in files)


def test_extend_continues_a_saved_flow_or_gd_run_as_gf_extend_does(tmp_path, capsys):
    run, gd = tmp_path / "run.nc", tmp_path / "gd.nc"
    net = ["--d", "5", "--width", "16", "--n", "4"]
    assert main(["simulate", *net, "--t1", "2", "--method", "dop853", "--out", str(run)]) == 0
    assert main(["simulate", *net, "--kind", "gradient_descent", "--step", "0.25", "--steps", "8", "--save-every",
                 "2", "--out", str(gd)]) == 0
    capsys.readouterr()
    out, fig = tmp_path / "long.nc", tmp_path / "long.png"
    assert main(["extend", str(run), "--t1", "5", "--saveat", "3", "--out", str(out), "--figure", str(fig)]) == 0
    text = capsys.readouterr().out
    assert "status: success — extended from t = 2 (success): reached t1 = 5" in text and fig.is_file()
    sol, same = gf.load(out), gf.extend(run, t1=5.0, saveat=3)
    assert sol.t[-4:].tolist() == [2.0, 3.0, 4.0, 5.0]
    np.testing.assert_array_equal(sol.loss, same.loss)
    assert main(["certify", str(out)]) == 0
    # one time that is not a count: the time itself (it was refused as "a count or comma-separated times")
    assert main(["extend", str(run), "--t1", "5", "--saveat", "3.5", "--out", str(out)]) == 0
    assert gf.load(out).t[-3:].tolist() == [2.0, 3.5, 5.0]
    with pytest.raises(SystemExit):
        main(["extend", str(run), "--t1", "5", "--saveat", "three", "--out", str(out)])
    assert "expected a count of output times" in capsys.readouterr().err
    assert main(["extend", str(gd), "--steps", "4", "--save-every", "3", "--out", str(out)]) == 0
    assert gf.load(out).t[-3:].tolist() == [2.0, 2.25, 3.0]  # (steps 9 and 12 of the whole run: multiples of 3)
    # a stopped continuation is saved, exit status 1; its checkpoint resumes it with the same command
    ckpt = tmp_path / "ext.ckpt"
    stop = ["extend", str(run), "--t1", "40", "--checkpoint", str(ckpt), "--out", str(out)]
    assert main([*stop, "--max-steps", "3"]) == 1
    assert "status: max_steps" in capsys.readouterr().out and ckpt.is_file() and gf.load(out).status == "max_steps"
    assert main(stop) == 0 and not ckpt.exists()
    assert gf.load(out).stats["resumed"] is True and gf.load(out).t[-1] == 40.0


@pytest.mark.parametrize("args,needle", [
    (["--steps", "5"], "the source is a flow (method 'dop853', to t = 2): give --t1 (the new final time), not --steps"),
    (["--t1", "5", "--save-every", "2"], "not --save-every; a flow's output times are --saveat"),
    (["--t1", "1"], "--t1 must lie beyond the run's end t = 2"),
    (["--t1", "5", "--saveat", "1,4"], "--saveat must lie in (t[-1], t1] = (2, 5]"),
    (["--t1", "5", "--saveat", "0"], "--saveat (a count of output times) must be an integer >= 1, got 0"),
    (["--t1", "5", "--method", "filippov"], "method 'filippov' cannot be continued"),
    (["--t1", "5", "--method", "RK45", "--checkpoint", "x.ckpt"], "checkpoint/resume needs gflow's native engine"),
    ([], "give --t1, the new final time"),
])
def test_extend_refusals_are_one_line_errors_with_exit_status_2(tmp_path, capsys, args, needle):
    run = tmp_path / "run.nc"
    assert main(["simulate", "--d", "5", "--width", "16", "--n", "4", "--t1", "2", "--method", "dop853", "--out",
                 str(run)]) == 0
    capsys.readouterr()
    out = tmp_path / "o.nc"
    assert main(["extend", str(run), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gflow: error: ") and err.count("\n") == 1 and needle in err, err
    assert not out.exists()


def test_extend_refuses_a_diverged_run_a_run_without_weights_and_a_flow_flag_for_gd(tmp_path, capsys):
    gd = tmp_path / "gd.nc"
    assert main(["simulate", "--d", "4", "--width", "8", "--n", "6", "--kind", "gradient_descent", "--activation",
                 "linear", "--step", "1000", "--steps", "50", "--save-every", "10", "--out", str(gd)]) == 1
    capsys.readouterr()
    assert main(["extend", str(gd), "--steps", "10", "--out", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gflow: error: extend: the source ended with status 'diverged'") and err.count("\n") == 1
    ok = gf.gradient_descent(gf.Network(d=4, width=8, seed=0), *gf.data.random_labels(n=6, d=4, seed=0), step=0.25,
                             steps=8)
    ok.save(tmp_path / "light.nc", include_weights=False)
    assert main(["extend", str(tmp_path / "light.nc"), "--steps", "4"]) == 2
    assert "saved without weights" in capsys.readouterr().err
    ok.save(tmp_path / "ok.nc")
    assert main(["extend", str(tmp_path / "ok.nc"), "--t1", "7"]) == 2
    assert "give --steps (how many more steps of the same δ), not --t1 (--t1 7.0 would be --steps 20)" in \
        capsys.readouterr().err
    assert main(["extend", str(tmp_path / "missing.nc"), "--steps", "4"]) == 2
    assert "missing.nc" in capsys.readouterr().err
