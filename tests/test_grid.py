"""The reproduction grid on its executors: serial, local process pool, Ray.

Smoke budget, a few T1 jobs (MAML and HSML, 5-shot). The reference is the serial path
(``--jobs 1``, in this process) at one torch thread, the thread count of a pool worker on a
2-core machine and of a Ray task: float32 sums depend on the thread count, so the numbers are
compared exactly where the thread counts agree.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hsmlbench.cli import main
from hsmlbench.run import single_job
from hsmlbench.run.executors import Outcome, available_cores, run_pool
from hsmlbench.run.grid import finished_result
from hsmlbench.run.jobs import Job, raw_path, run_dir
from hsmlbench.run.single_job import run_job
from hsmlbench.run.versioning import CODE_VERSION_FILE, code_version, job_sources

GRID = ["--tables", "T1", "--methods", "maml", "hsml", "--settings", "5-shot", "--budget", "smoke"]
JOBS = [Job("T1", m, "5-shot", seed, "smoke") for m in ("maml", "hsml") for seed in (0, 1)]


def _argv(out: Path, work: Path, *extra: str) -> list[str]:
    return ["reproduce", *GRID, "--quiet", "--out", str(out), "--work-dir", str(work), *extra]


def _without_timing(value):
    """A table's JSON less what differs between two runs of the same jobs (times, dates)."""
    if isinstance(value, dict):
        return {
            k: _without_timing(v)
            for k, v in value.items()
            if k not in ("wall_time_s", "environment")
        }
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _per_task(out: Path, jobs) -> dict[str, list[float]]:
    return {job.name: json.loads(raw_path(out, job).read_text())["per_task"] for job in jobs}


def _assert_same_numbers(out: Path, reference: Path, jobs, exact: bool = True) -> None:
    got, want = _per_task(out, jobs), _per_task(reference, jobs)
    for name in want:
        if exact:
            assert got[name] == want[name], name
        else:  # another torch thread count: same math, other float32 summation order
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=name)


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory) -> Path:
    """Four jobs (2 methods × 2 seeds) one after another in this process, one thread."""
    root = tmp_path_factory.mktemp("serial")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_argv(root / "out", root / "w", "--seeds", "2", "--jobs", "1")) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "out"


@pytest.mark.slow
def test_local_pool_gives_the_serial_numbers(tmp_path, serial_reference, capsys):
    out = tmp_path / "out"
    assert main(_argv(out, tmp_path / "w", "--seeds", "2", "--jobs", "2")) == 0
    # pool workers get cores // 2 threads: one on the 2-core CI machine
    _assert_same_numbers(out, serial_reference, JOBS, exact=available_cores() // 2 <= 1)
    lines = capsys.readouterr().out.splitlines()
    assert any("2 running" in line for line in lines)  # both workers had a job at once
    last = [line for line in lines if line.startswith("[grid:")][-1]
    assert last.startswith("[grid: 4/4 done, 0 running, 0 failed, 0 queued, ETA 00:00]")
    raw = json.loads(raw_path(out, JOBS[0]).read_text())
    assert raw["provenance"]["host"] and "1 thread)" in raw["provenance"]["device"]
    assert raw["code_version"] == code_version()


@pytest.mark.slow
def test_ray_executor_gives_the_serial_numbers(tmp_path, serial_reference):
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'hsmlbench[ray]'")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert main(_argv(tmp_path / "out", tmp_path / "w", "--executor", "ray")) == 0
    finally:
        ray.shutdown()
    seed0 = [job for job in JOBS if job.seed == 0]
    _assert_same_numbers(tmp_path / "out", serial_reference, seed0)  # a Ray task: one thread
    raw = json.loads(raw_path(tmp_path / "out", seed0[0]).read_text())
    assert raw["provenance"]["host"] and raw["provenance"]["device"].startswith("CPU")


@pytest.mark.slow
def test_killed_grid_reruns_only_the_missing_jobs_and_gives_the_same_table(
    tmp_path, serial_reference
):
    out, work = tmp_path / "out", tmp_path / "w"
    cmd = [sys.executable, "-m", "hsmlbench.cli", *_argv(out, work, "--seeds", "2", "--jobs", "2")]
    runs = out / "runs" / "T1"
    # its own session, so the kill takes the pool's workers too (like a lost machine)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while not list(runs.glob("*.json")):
        assert proc.poll() is None, "the grid ended before it could be killed"
        assert time.monotonic() < deadline, "no job finished in 10 minutes"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    assert 1 <= len(before) < len(JOBS)

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"] {len(before)} finished already" in again.stdout
    assert again.stdout.count("] started ") == len(JOBS) - len(before)
    for name, mtime in before.items():  # finished jobs untouched
        assert (runs / name).stat().st_mtime_ns == mtime
    table = json.loads((out / "T1.json").read_text())
    reference = json.loads((serial_reference / "T1.json").read_text())
    for got, want in zip(table["rows"], reference["rows"]):  # name the first difference
        for key in set(want) - {"wall_time_s", "environment"}:
            assert _without_timing(got[key]) == _without_timing(want[key]), (
                got["method"],
                got["seed"],
                key,
            )
    assert _without_timing(table) == _without_timing(reference)


class _Collect:
    """A tracker that keeps every outcome."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def started(self, job) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def test_pool_workers_see_the_environment_of_their_grid_not_of_the_fork_server(monkeypatch):
    # the fork server starts (or is already running) without the variable ...
    monkeypatch.delenv("HSMLBENCH_GRID_TEST", raising=False)
    first = _Collect()
    run_pool(os.getenv, ["HSMLBENCH_GRID_TEST"], (), 1, first)
    assert [o.raw for o in first.outcomes] == [None]
    # ... and a later grid's workers, forked from it, still get the grid's environment
    monkeypatch.setenv("HSMLBENCH_GRID_TEST", "set after the server started")
    later = _Collect()
    run_pool(os.getenv, ["HSMLBENCH_GRID_TEST", "PATH"], (), 2, later)
    assert {o.raw for o in later.outcomes} == {"set after the server started", os.environ["PATH"]}


POOL_AFTER_OPENMP = """
import torch
from hsmlbench.run.executors import run_pool
class Collect:
    def __init__(self):
        self.outcomes = []
    def started(self, job):
        pass
    def finished(self, outcome):
        self.outcomes.append(outcome)
torch.set_num_threads(2)
a = torch.randn(800, 800)
for _ in range(5):
    (a @ a).sum()  # this process has now run OpenMP code on two threads
collect = Collect()
run_pool(torch.mm, [a, a], (a,), 1, collect)  # one worker: all cores, i.e. two threads here
assert [o.error for o in collect.outcomes] == [None, None], collect.outcomes
print("ok", torch.get_num_threads())
"""


@pytest.mark.skipif(available_cores() < 2, reason="needs two cores for two OpenMP threads")
def test_pool_workers_do_not_hang_after_this_process_ran_openmp_code(tmp_path):
    """A child forked straight from a process that ran OpenMP code hangs in its first
    parallel region; pool workers come from a fork server (or spawn) instead."""
    result = subprocess.run(
        [sys.executable, "-c", POOL_AFTER_OPENMP],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,  # a hang fails here
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "2"]


def _live_processes_of_session(session: int) -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every process of ``session`` that has not ended."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # ended meanwhile
            continue
        state, parent, session_id = fields[0], int(fields[1]), int(fields[3])
        if session_id == session and state not in ("Z", "X"):
            found[int(stat.parent.name)] = (parent, cmdline)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_killing_only_the_grid_process_stops_its_workers(tmp_path):
    """Pool workers are children of the fork server, not of the grid: they must still end
    when the grid is killed alone (SIGKILL, no chance to clean up), not train on."""
    # no run-time bound: on a loaded machine the projection may skip the cells (exit 4)
    argv = ["--tables", "T1", "--methods", "maml", "--budget", "quick", "--jobs", "2"]
    argv += ["--max-cell-minutes", "0"]
    cmd = [sys.executable, "-m", "hsmlbench.cli", "reproduce", *argv, "--quiet"]
    cmd += ["--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "w")]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # both workers started: two processes whose parent is not the grid
            processes = _live_processes_of_session(proc.pid)
            workers = [p for p, (parent, _) in processes.items() if parent not in (proc.pid, 1)]
            if len(workers) >= 2:
                break
            assert proc.poll() is None, "the grid ended before its workers started"
            assert time.monotonic() < deadline, f"no two workers after 120 s: {processes}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while (left := _live_processes_of_session(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"still running 15 s after the grid was killed: {left}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_failing_job_is_reported_the_rest_finish_and_a_rerun_retries_it(tmp_path, capsys, workers):
    out, work = tmp_path / "out", tmp_path / "w"
    bad, good = JOBS[2], JOBS[0]  # hsml seed 0, maml seed 0
    # A folder where the job's code-version tag should be: reading it raises IsADirectoryError.
    blocker = run_dir(work, bad) / "code_version.txt"
    blocker.mkdir(parents=True)
    argv = _argv(out, work, "--jobs", workers)

    assert main(argv) == 3
    captured = capsys.readouterr()
    error_file = run_dir(work, bad) / "error.txt"
    assert f"  {bad.name}: IsADirectoryError" in captured.err
    assert f"(traceback: {error_file})" in captured.err
    assert "Traceback (most recent call last)" in error_file.read_text()
    assert f"FAILED {bad.name}: IsADirectoryError" in captured.out
    assert "[grid: 1/2 done, 0 running, 1 failed, 0 queued" in captured.out
    rows = json.loads((out / "T1.json").read_text())["rows"]
    assert [(r["method"], r["seed"]) for r in rows] == [("maml", 0)]  # rendered what finished
    good_mtime = raw_path(out, good).stat().st_mtime_ns

    blocker.rmdir()
    assert main(argv) == 0
    rerun = capsys.readouterr().out
    assert "] 1 finished already" in rerun and rerun.count("] started ") == 1
    assert f"started {bad.name}" in rerun
    assert raw_path(out, good).stat().st_mtime_ns == good_mtime
    assert not error_file.exists()
    rows = json.loads((out / "T1.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["maml", "hsml"]


def test_raw_file_reuse_follows_config_seed_and_code_version(tmp_path, serial_reference):
    job = JOBS[0]
    raw = json.loads(raw_path(serial_reference, job).read_text())
    path = raw_path(tmp_path, job)
    path.parent.mkdir(parents=True)

    def reused(**changes) -> bool:
        path.write_text(json.dumps({k: v for k, v in raw.items() if k not in changes} | changes))
        return finished_result(job, tmp_path) is not None

    assert reused()
    assert reused(code_version=code_version())
    assert not reused(code_version="0.0.0+other")
    assert not reused(seed=job.seed + 1)
    assert not reused(config=raw["config"] | {"inner_lr": 0.5})
    # written before code_version existed: of unknown code, so never reused
    path.write_text(json.dumps({k: v for k, v in raw.items() if k != "code_version"}))
    assert finished_result(job, tmp_path) is None


def test_checkpoint_of_other_code_is_set_aside_and_an_untagged_one_is_resumed(tmp_path):
    job = Job("T1", "maml", "5-shot", 0, "smoke")
    folder = run_dir(tmp_path / "w", job)
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"not a checkpoint")
    # untagged (older than the tag): resumed, so the unreadable file is set aside (kept) and
    # the job trains from scratch instead of failing on every rerun
    raw = run_job(job, tmp_path / "out", tmp_path / "w", progress=False)
    assert len(raw["per_task"]) == 200
    (aside,) = folder.glob("checkpoint.pt.corrupt-*")
    assert aside.read_bytes() == b"not a checkpoint"
    raw_path(tmp_path / "out", job).unlink()
    (folder / "checkpoint.pt").write_bytes(b"not a checkpoint")
    # started by other code: kept aside, and the job trains from scratch
    (folder / CODE_VERSION_FILE).write_text("0.0.0+other\n")
    raw = run_job(job, tmp_path / "out", tmp_path / "w", progress=False)
    assert raw["code_version"] == code_version() and len(raw["per_task"]) == 200
    assert (folder / "checkpoint-0.0.0+other.pt").read_bytes() == b"not a checkpoint"
    assert (folder / CODE_VERSION_FILE).read_text().strip() == code_version()


def test_code_version_hashes_the_job_code_only():
    sources = job_sources()
    for module in (
        "hsmlbench.run.training",
        "hsmlbench.methods.hsml",
        "hsmlbench.kernels.gated_init",
    ):
        assert module in sources
    assert "hsmlbench.cli" not in sources
    assert not any(m.startswith("hsmlbench.domains.images") for m in sources)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--jobs", "0"], "--jobs 0: need at least 1"),
        (["--address", "auto"], "--address needs --executor ray"),
        (["--executor", "ray", "--jobs", "2"], "--jobs is for --executor local"),
    ],
)
def test_bad_grid_arguments_exit_2(tmp_path, capsys, extra, message):
    assert main(_argv(tmp_path / "out", tmp_path / "w", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_ray_executor_without_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(_argv(tmp_path / "out", tmp_path / "w", "--executor", "ray")) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'hsmlbench[ray]'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_diverged_run_is_a_recorded_result_said_in_its_table(tmp_path, capsys, monkeypatch):
    """A non-finite meta-loss in one seed: the grid goes on, the raw file says where it
    diverged, the table counts it beside the seeds that finished and says so in its notes,
    and a re-run does not retry it (same config, seed and code diverge again)."""
    from hsmlbench.run.training import NonFiniteLossError

    diverging = JOBS[2]  # hsml seed 0
    real_train, calls = single_job.train, []

    def train(config, seed, *args, **kwargs):
        calls.append((config.method, seed))
        if (config.method, seed) == (diverging.method, diverging.seed):
            raise NonFiniteLossError(
                f"{config.job_name} seed {seed}: meta-loss is inf at iteration 37; no checkpoint "
                "was written yet. Lower the outer learning rate or check the task data.",
                37,
            )
        return real_train(config, seed, *args, **kwargs)

    real_evaluate = single_job.evaluate

    def evaluate(model, config, *args, **kwargs):  # maml seed 1: trains, then blows up in test
        if calls[-1] == ("maml", 1):
            raise FloatingPointError(f"{config.job_name}: 3 of 200 test tasks are not finite")
        return real_evaluate(model, config, *args, **kwargs)

    monkeypatch.setattr(single_job, "train", train)
    monkeypatch.setattr(single_job, "evaluate", evaluate)
    out, work = tmp_path / "out", tmp_path / "w"
    argv = _argv(out, work, "--seeds", "2", "--jobs", "1")

    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"DIVERGED {diverging.name}" in captured.out
    assert f"hsmlbench: {diverging.name} diverged, recorded in its table" in captured.err
    raw = json.loads(raw_path(out, diverging).read_text())
    assert raw["status"] == "diverged" and raw["diverged_at_iteration"] == 37
    assert raw["iterations"] == 60 and raw["code_version"] == code_version()
    table = json.loads((out / "T1.json").read_text())
    assert sorted((r["method"], r["seed"]) for r in table["rows"]) == [("hsml", 1), ("maml", 0)]
    common = {"setting": "5-shot", "iterations": 60}
    assert table["diverged"] == [
        {"method": "maml", "seed": 1, "diverged_at_iteration": None} | common,
        {"method": "hsml", "seed": 0, "diverged_at_iteration": 37} | common,
    ]
    assert any(
        "- maml 5-shot seed 1: trained, but its test-time adaptation diverged" in note
        for note in table["notes"]
    )
    assert any("- hsml 5-shot seed 0: meta-training diverged" in note for note in table["notes"])
    markdown = (out / "T1.md").read_text()
    hsml_row = next(line for line in markdown.splitlines() if line.startswith("| HSML "))
    assert "| 1 (+1 diverged) " in hsml_row
    assert "at iteration 37 of 60" in markdown
    maml_row = next(line for line in markdown.splitlines() if line.startswith("| MAML "))
    assert "| 1 (+1 diverged) " in maml_row

    calls.clear()
    assert main(argv) == 0  # reused, not retried
    assert calls == [] and "4 finished already" in capsys.readouterr().out
    raw_path(out, diverging).unlink()  # deleting the record retries it
    assert main(argv) == 0
    assert calls == [(diverging.method, diverging.seed)]
