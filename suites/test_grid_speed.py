"""Speed of the reproduction grid: the T1 grid (3 methods × 2 settings = 6 jobs) with
``--jobs 2`` against ``--jobs 1``, both measured in this run, two ways:

- **cold**: the command a user types, ``python -m hsmlbench.cli reproduce ...``, a fresh
  process each round: interpreter start, imports, the pool's fork server, the jobs, the
  table and figures, teardown. At the suite's ``--budget`` (smoke: 3 rounds; quick and
  paper: 1 round; quick takes about 8 minutes for both).
- **warm** (smoke only): ``main()`` in this process after one untimed round of the same grid,
  for each path: neither pays process start-up or first-use imports (torch.optim's import of
  torch._dynamo, the fork server), so what is timed is the jobs, scheduling and rendering.

The target is at least 1.6× at the smoke budget on the 2-core CPU. Ratios are recorded,
never asserted, and mean something only on an otherwise idle machine. Each round gets fresh
output and work folders, so no job is reused.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from hsmlbench.cli import main

TABLE = ["reproduce", "--tables", "T1", "--quiet"]

_MEANS: dict[tuple[str, int], float] = {}
_PER_TASK: dict[tuple[str, int], dict] = {}


def _per_task(out) -> dict:
    rows = json.loads((out / "T1.json").read_text())["rows"]
    assert len(rows) == 6
    return {(r["method"], r["setting"], r["seed"]): r["per_task"] for r in rows}


def _check_and_record(benchmark, speed_ratios, mode: str, budget: str, jobs: int, out) -> None:
    _PER_TASK[mode, jobs] = _per_task(out)
    if jobs == 2 and (mode, 1) in _PER_TASK:
        reference = _PER_TASK[mode, 1]
        assert _PER_TASK[mode, 2].keys() == reference.keys()
        for key, values in reference.items():
            if budget == "smoke":
                # Same jobs, same numbers up to float32 summation order (one thread per
                # worker here, all cores in the --jobs 1 process).
                np.testing.assert_allclose(_PER_TASK[mode, 2][key], values, rtol=1e-5)
            else:  # thousands of steps amplify that order: only the same test tasks
                assert len(_PER_TASK[mode, 2][key]) == len(values), key
    if benchmark.stats is None:  # --benchmark-disable
        return
    _MEANS[mode, jobs] = benchmark.stats.stats.mean
    benchmark.extra_info.update({"budget": budget, "mode": mode})
    if jobs == 2 and (mode, 1) in _MEANS:
        ratio = _MEANS[mode, 1] / _MEANS[mode, 2]
        benchmark.extra_info["speedup_vs_jobs_1"] = ratio
        speed_ratios.append(
            f"T1 grid ({budget}, {mode}): --jobs 1 {_MEANS[mode, 1]:.2f} s, "
            f"--jobs 2 {_MEANS[mode, 2]:.2f} s: {ratio:.2f}x"
        )


@pytest.mark.benchmark(group="grid-cold")
@pytest.mark.parametrize("jobs", [1, 2])
def test_T1_grid_cold(benchmark, speed_ratios, tmp_path_factory, budget, jobs):
    def fresh_folders():
        return (tmp_path_factory.mktemp(f"grid-cold-jobs{jobs}-"),), {}

    def command(root):
        argv = [*TABLE, "--budget", budget, "--jobs", str(jobs)]
        argv += ["--out", str(root / "out"), "--work-dir", str(root / "work")]
        # Output to a file, not a pipe: the time ends when the command does, as in a shell,
        # not when the pool's fork server, which holds the same stdout, has torn down.
        with open(root / "log.txt", "w") as log:
            done = subprocess.run(
                [sys.executable, "-m", "hsmlbench.cli", *argv], stdout=log, stderr=log
            )
        assert done.returncode == 0, (root / "log.txt").read_text()
        return root / "out"

    rounds = 3 if budget == "smoke" else 1
    out = benchmark.pedantic(command, setup=fresh_folders, rounds=rounds)
    _check_and_record(benchmark, speed_ratios, "cold", budget, jobs, out)


@pytest.mark.benchmark(group="grid-warm")
@pytest.mark.parametrize("jobs", [1, 2])
def test_smoke_T1_grid_warm(benchmark, speed_ratios, tmp_path_factory, jobs):
    def fresh_folders():
        return (tmp_path_factory.mktemp(f"grid-warm-jobs{jobs}-"),), {}

    def grid(root):
        argv = [*TABLE, "--budget", "smoke", "--jobs", str(jobs)]
        argv += ["--out", str(root / "out"), "--work-dir", str(root / "work")]
        assert main(argv) == 0
        return root / "out"

    out = benchmark.pedantic(grid, setup=fresh_folders, rounds=3, warmup_rounds=1)
    _check_and_record(benchmark, speed_ratios, "warm", "smoke", jobs, out)
