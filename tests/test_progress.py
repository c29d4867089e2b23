"""Progress bars: drawn on a terminal only, only after a delay, and every long layer reports progress."""

import io
import sys

import numpy as np
import pytest

from snnc import ir
from snnc.errors import SnncError
from snnc.passes import PassManager
from snnc.passes.pipeline import build_pipeline
from snnc import progress
from snnc.progress import ProgressBar
from snnc.runtime.simulator import Simulator
from snnc.targets import load_target

from graphs import mlp, recurrent_mlp, spikes


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does when a person is watching."""

    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bar_draws_on_a_terminal_after_the_delay_and_erases_itself():
    stream, clock = Terminal(), Clock()
    with ProgressBar("compile", stream, clock=clock) as bar:
        bar(0, 4, "fuse-synapses")
        assert stream.getvalue() == ""  # short work prints nothing
        clock.now += 1.5
        bar(1, 4, "quantize-loihi")
        drawn = stream.getvalue()
        assert drawn.startswith("\rcompile [#####...............] 1/4 quantize-loihi 2 s")
        assert drawn.endswith("\x1b[K")
    assert stream.getvalue() == drawn + "\r\x1b[K"


def test_bar_redraws_at_most_every_interval():
    stream, clock = Terminal(), Clock()
    bar = ProgressBar("run", stream, clock=clock, interval=0.5)
    clock.now += 2
    for done in range(10):
        bar(done, 10, "steps")
    assert stream.getvalue().count("\r") == 1
    clock.now += 0.6
    bar(10, 10, "steps")
    assert stream.getvalue().count("\r") == 2 and "10/10" in stream.getvalue()


def test_bar_with_unknown_total_counts():
    stream, clock = Terminal(), Clock()
    bar = ProgressBar("env", stream, clock=clock, delay=0)
    bar(7, None, "installing")
    assert stream.getvalue().startswith("\renv 7 installing 0 s")


@pytest.mark.parametrize("stream, enabled", [(io.StringIO(), True), (Terminal(), False)], ids=["piped", "--json"])
def test_bar_is_silent_when_piped_or_disabled(stream, enabled):
    clock = Clock()
    bar = ProgressBar("run", stream, enabled=enabled, clock=clock)
    clock.now += 10
    bar(1, 2, "steps")
    bar.close()
    assert stream.getvalue() == ""


def test_bar_line_fits_the_terminal_width():
    stream, clock = Terminal(), Clock()
    bar = ProgressBar("compile", stream, clock=clock, delay=0)
    bar(1, 2, "x" * 500)
    line = stream.getvalue().removeprefix("\r").removesuffix("\x1b[K")
    assert 0 < len(line) < 80


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, done, total, label):
        self.calls.append((done, total, label))


def test_pass_manager_reports_one_tick_per_pass_with_its_name():
    passes = build_pipeline(load_target("loihi2"))
    progress = Recorder()
    PassManager(passes).run(mlp(np.random.default_rng(0)), progress=progress)
    names = [p.name for p in passes]
    assert progress.calls == [(i, len(names), name) for i, name in enumerate(names)] + [(len(names), len(names), "")]


def test_simulator_reports_blocks_of_steps():
    graph = ir.verify(recurrent_mlp(np.random.default_rng(0)))
    simulator = Simulator(graph)
    simulator.BLOCK_BYTES = 2 * 7 * 8 * 10  # ten steps a block for the widest node (7 values, batch 2)
    progress = Recorder()
    x = spikes(np.random.default_rng(1), (2, 35, 5))
    simulator.run(x, progress=progress)
    assert progress.calls == [(10, 35, "steps"), (20, 35, "steps"), (30, 35, "steps"), (35, 35, "steps")]


def test_environment_creation_reports_each_step_and_the_packages_pip_collects(tmp_path, monkeypatch):
    from snnc.runtime import lava_env

    monkeypatch.setenv("SNNC_LAVA_ENV", str(tmp_path / "env"))
    monkeypatch.setattr(lava_env, "find_python310", lambda: sys.executable)
    pip = "print('Collecting lava-nc==0.10.0'); print('  Downloading ...'); print('Collecting numpy<2')"
    monkeypatch.setattr(lava_env, "_steps", lambda python, env: [
        ("creating the venv", [python, "-c", f"import os; os.makedirs({str(env)!r})"]),
        ("pip install", [python, "-c", pip])])
    progress = Recorder()
    lava_env.ensure_environment(log=lambda line: None, progress=progress)
    assert progress.calls == [(0, 2, "creating the venv"), (1, 2, "pip install"),
                              (1, 2, "pip install: 1 packages collected"), (1, 2, "pip install: 2 packages collected"),
                              (2, 2, "")]


def test_a_failed_environment_step_names_its_last_line_and_leaves_nothing(tmp_path, monkeypatch):
    from snnc.runtime import lava_env

    monkeypatch.setenv("SNNC_LAVA_ENV", str(tmp_path / "env"))
    monkeypatch.setattr(lava_env, "find_python310", lambda: sys.executable)
    failing = "import os, sys; os.makedirs(sys.argv[1]); print('Collecting x'); sys.exit('ERROR: no such version')"
    monkeypatch.setattr(lava_env, "_steps", lambda python, env: [("pip install", [python, "-c", failing, str(env)])])
    with pytest.raises(SnncError, match=r"failed at .*: ERROR: no such version$"):
        lava_env.ensure_environment(log=lambda line: None, progress=Recorder())
    assert not (tmp_path / "env").exists()


def test_isolated_run_hands_over_stdout_lines_as_they_come_and_keeps_stderr():
    from snnc.runtime.lava_run import _run_isolated

    seen = []
    program = "import sys; [print(f'sample {i} run_seconds 0.5', flush=True) for i in range(3)]; " \
              "sys.stderr.write('x' * 200000 + '\\nlast words\\n'); sys.exit(3)"
    result = _run_isolated([sys.executable, "-c", program], 60, seen.append)
    assert seen == [f"sample {i} run_seconds 0.5\n" for i in range(3)]
    assert result.returncode == 3 and result.stderr.endswith("last words\n") and len(result.stderr) > 200000


def test_lava_run_reports_each_sample(tmp_path):
    from snnc.backends import compile_graph
    from snnc.runtime.lava_env import ensure_environment
    from snnc.runtime.lava_run import run_lava

    ensure_environment(log=lambda line: None)
    graph = ir.verify(mlp(np.random.default_rng(3), sizes=(6, 5, 3)))
    ir.save(graph, tmp_path / "m.snnir")
    artifact = compile_graph(graph, "loihi2", tmp_path / "m.snnir", tmp_path / "art")
    progress, timings = Recorder(), []
    x = spikes(np.random.default_rng(4), (3, 8, 6)).astype(np.int64)
    run_lava(artifact, x, log=lambda line: None, progress=progress, timings=timings)
    assert progress.calls == [(i, 3, "Lava samples") for i in range(4)] and len(timings) == 3


def test_message_above_the_bar_erases_it_first_and_the_bar_returns():
    stream, clock = Terminal(), Clock()
    bar = ProgressBar("env", stream, clock=clock, delay=0)
    bar(1, 3, "pip install")
    bar.message("Lava environment ready")
    assert stream.getvalue().endswith("\x1b[K\r\x1b[KLava environment ready\n")
    bar(2, 3, "checking")
    assert stream.getvalue().endswith("Lava environment ready\n\renv [#############.......] 2/3 checking 0 s\x1b[K")


def test_message_without_a_terminal_is_a_plain_line():
    stream = io.StringIO()
    ProgressBar("env", stream).message("creating the Lava environment")
    assert stream.getvalue() == "creating the Lava environment\n"


# -- the command line shows bars on a terminal only, and never with --json


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "mlp.snnir"
    ir.save(ir.verify(mlp(np.random.default_rng(0))), path)
    np.save(tmp_path / "x.npy", spikes(np.random.default_rng(1), (2, 30, 40)))
    return path


@pytest.fixture
def immediate(monkeypatch):
    """Bars drawn from the first update on, and at every update, so that short work shows them."""
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)


def cli(monkeypatch, stderr, *args) -> str:
    from snnc.cli import main

    monkeypatch.setattr(sys, "stderr", stderr)
    assert main([str(a) for a in args]) == 0, stderr.getvalue()
    return stderr.getvalue()


def test_compile_on_a_terminal_shows_each_pass_then_erases_the_bar(model, tmp_path, monkeypatch, immediate):
    shown = cli(monkeypatch, Terminal(), "compile", model, "--target", "loihi2", "-o", tmp_path / "art")
    pipeline = load_target("loihi2").pipeline
    for index, name in enumerate(pipeline):
        assert f"] {index}/{len(pipeline)} {name} " in shown
    assert shown.startswith("\rcompiling [") and shown.endswith("\r\x1b[K")


def test_run_on_a_terminal_shows_steps(model, tmp_path, monkeypatch, immediate):
    shown = cli(monkeypatch, Terminal(), "run", model, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npz")
    assert "\rrunning (sim) [####################] 30/30 steps" in shown and shown.endswith("\r\x1b[K")


def test_inspect_lowering_on_a_terminal_shows_passes(model, tmp_path, monkeypatch, immediate):
    shown = cli(monkeypatch, Terminal(), "inspect", model, "--target", "loihi2", "-o", tmp_path / "ir.txt")
    assert "\rlowering [" in shown and "quantize-loihi" in shown


@pytest.mark.parametrize("stderr, flag", [(io.StringIO(), None), (Terminal(), "--json")], ids=["piped", "--json"])
def test_no_bar_when_piped_or_with_json(model, tmp_path, monkeypatch, immediate, stderr, flag):
    extra = [flag] if flag else []
    assert cli(monkeypatch, stderr, "compile", model, "--target", "loihi2", "-o", tmp_path / "art", *extra) == ""
    assert cli(monkeypatch, stderr, "run", tmp_path / "art", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npz",
               *extra) == ""
