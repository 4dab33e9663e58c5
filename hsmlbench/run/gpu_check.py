"""``hsmlbench gpu-check``: everything a GPU must show, in one command of at most 8 minutes.

Made for a CUDA machine lent for minutes: each step runs in its own process with its own
time budget, so a failure or a hang still leaves the other steps' results, and everything is
written under one folder (``--out``): ``gpu-check.md`` (what a person reads), ``gpu-check.json``
(every step's data), one ``<step>.log`` per step, and ``kernels.md``. The steps:

- ``environment`` (30 s): versions (torch, CUDA, cuDNN, Triton, Python), the device, and the
  numerics flags a job runs under (docs/PROTOCOL.md §6 "Numerics on a GPU").
- ``kernels`` (240 s): the Triton kernels against the float32 twin and a float64 reference on
  the device, then timed against eager and ``torch.compile``d torch at the training shapes
  (``suites/test_kernels_bench.py``; writes ``kernels.md``).
- ``image-step`` (90 s): one T3 meta-iteration (1-shot, meta-batch 4, 84×84) of each method,
  with the Triton kernels and with the torch twins: seconds per iteration, peak memory, and
  the projected wall time of one paper-budget T3 seed.
- ``train-resume`` (150 s): a short T3-synthetic training at 84×84 per method, run once
  whole and once killed (SIGKILL) after its first checkpoint and resumed, both evaluated: the
  per-task accuracies must be bit-identical.
- ``profile`` (45 s): one HSML meta-iteration under the torch profiler: kernel launches, the
  share of wall time the device is busy, the top kernels.

On a machine without CUDA it says so and exits with code 6, running nothing (``--allow-cpu``
runs the steps on the CPU, to test this module). Exit 0: every step passed; 3: a step failed
or ran out of time (its log says why).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

EXIT_NO_CUDA = 6
EXIT_STEP_FAILED = 3
TOTAL_BUDGET_S = 8 * 60
METHODS = ("maml", "mumomaml", "hsml")


@dataclass(frozen=True)
class Step:
    name: str
    budget_s: int
    what: str


STEPS = (
    Step("environment", 30, "versions, device, numerics flags"),
    Step("kernels", 240, "kernels vs float64 reference; timings vs eager and torch.compile"),
    Step("image-step", 90, "T3 meta-iteration per method, Triton kernels on and off"),
    Step("train-resume", 150, "T3-synthetic 84×84 per method: whole vs killed and resumed"),
    Step("profile", 45, "one HSML meta-iteration: launches, device-busy share"),
)
assert sum(s.budget_s for s in STEPS) <= TOTAL_BUDGET_S + 100  # leaves the rest for start-up


# ----------------------------------------------------------------------------- the steps
# Each runs in its own process (``python -m hsmlbench.run.gpu_check --step NAME``) and writes
# ``<out>/<name>.json``.


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def step_environment(out: Path, args) -> dict:
    import platform

    import torch

    from hsmlbench.results.provenance import numerics_flags, probe
    from hsmlbench.run.numerics import apply_numerics_policy
    from hsmlbench.run.versioning import code_version

    apply_numerics_policy()
    info = probe(_device(), [])
    info |= {
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "machine": platform.machine(),
        "numerics": numerics_flags(),
        "code_versions": {d: code_version(d) for d in ("regression", "images")},
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "sms": props.multi_processor_count,
        }
    return info


def step_kernels(out: Path, args) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "the kernel benchmarks need CUDA (on a CPU: tests/interpreter)"}
    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"HSMLBENCH_RESULTS_DIR": str(out)}
    command = [sys.executable, "-m", "pytest", str(root / "suites" / "test_kernels_bench.py")]
    command += ["--benchmark-only", "-p", "no:cacheprovider", "-q", "-x"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    print(done.stdout[-6000:], done.stderr[-3000:], sep="\n")
    if done.returncode != 0:
        raise RuntimeError(f"kernel benchmarks failed (pytest exit {done.returncode})")
    return {"report": "kernels.md", "pytest": done.stdout.strip().splitlines()[-1]}


def _meta_iteration_seconds(method: str, image_size: int, device: str, kernels: str) -> dict:
    """A fresh process per (method, kernels): the dispatch reads HSMLBENCH_KERNELS once."""
    code = (
        "import json, sys; from hsmlbench.run.numerics import apply_numerics_policy; "
        "apply_numerics_policy(); "
        "from hsmlbench.domains.images.bench import time_meta_iteration; "
        f"print(json.dumps(time_meta_iteration({method!r}, {image_size}, {device!r}, "
        f"repeats={1 if device == 'cpu' else 10})))"
    )
    env = os.environ | {"HSMLBENCH_KERNELS": kernels}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{method} ({kernels}): {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def step_image_step(out: Path, args) -> dict:
    device = _device()
    rows = []
    for method in METHODS:
        # the kernels are HSML's; on a CPU (a test of this module) only the torch twins run
        both = method == "hsml" and device == "cuda"
        for kernels in ("triton", "torch") if both else ("torch",):
            row = _meta_iteration_seconds(method, args.image_size, device, kernels)
            rows.append(row | {"kernels": kernels})
            print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows}


def _short_config(method: str, image_size: int):
    import dataclasses

    from hsmlbench.domains.images.configs import image_run_config

    config = image_run_config("T3-synthetic", method, "1-shot", "smoke")
    return dataclasses.replace(config, image_size=image_size)


def train_and_evaluate(method: str, image_size: int, run_dir: Path, resume: bool) -> None:
    """Worker of ``train-resume``: trains (or resumes) the short config, evaluates it, and
    writes ``<run_dir>/evaluated.json`` (per-task accuracies per dataset)."""
    import torch

    from hsmlbench.run.evaluation import evaluate
    from hsmlbench.run.training import train

    config = _short_config(method, image_size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trained = train(config, 0, run_dir, resume=resume, progress=False, device=device)
    results = evaluate(trained.model, config, None, torch.device(device))
    per_task = {name: r.headline.tolist() for name, r in results.items()}
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    (run_dir / "evaluated.json").write_text(json.dumps({"per_task": per_task, "peak_mb": peak}))


def _worker(method: str, image_size: int, run_dir: Path, resume: bool) -> list[str]:
    return [
        sys.executable, "-m", "hsmlbench.run.gpu_check", "--train-worker", method,
        "--image-size", str(image_size), "--run-dir", str(run_dir),
    ] + (["--resume"] if resume else [])  # fmt: skip


def step_train_resume(out: Path, args) -> dict:
    rows = []
    for method in METHODS:
        whole, cut = out / "train" / method / "whole", out / "train" / method / "cut"
        for folder in (whole, cut):
            folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        subprocess.run(_worker(method, args.image_size, whole, False), check=True)
        whole_s = time.perf_counter() - t0
        killed = subprocess.Popen(_worker(method, args.image_size, cut, False))
        while killed.poll() is None and not (cut / "checkpoint.pt").exists():
            time.sleep(0.05)
        was_running = killed.poll() is None
        if was_running:
            killed.send_signal(signal.SIGKILL)
        killed.wait()
        subprocess.run(_worker(method, args.image_size, cut, True), check=True)
        a = json.loads((whole / "evaluated.json").read_text())
        b = json.loads((cut / "evaluated.json").read_text())
        rows.append(
            {
                "method": method,
                "killed_after_first_checkpoint": was_running,
                "bit_identical": a["per_task"] == b["per_task"],
                "whole_run_s": round(whole_s, 1),
                "peak_mb": a["peak_mb"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if not all(r["bit_identical"] for r in rows):
        raise AssertionError(f"a resumed run differs from the whole run: {rows}")
    return {"rows": rows}


def step_profile(out: Path, args) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from hsmlbench.domains.images.bench import meta_iteration
    from hsmlbench.run.numerics import apply_numerics_policy

    apply_numerics_policy()
    device = _device()
    step, *_ = meta_iteration("hsml", args.image_size, device)
    for _ in range(2):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        step()
        if device == "cuda":
            torch.cuda.synchronize()
    wall_us = (time.perf_counter() - t0) * 1e6
    events = [e for e in prof.events() if e.device_type.name == "CUDA"]
    busy_us = sum(e.device_time for e in events) if events else 0.0
    top = sorted(events, key=lambda e: e.device_time, reverse=True)[:8]
    return {
        "wall_ms": round(wall_us / 1e3, 2),
        "kernel_launches": len(events),
        "device_busy_share": round(busy_us / wall_us, 3) if events else None,
        "top_kernels": [{"name": e.name[:80], "us": round(e.device_time, 1)} for e in top],
    }


STEP_FUNCTIONS = {
    "environment": step_environment,
    "kernels": step_kernels,
    "image-step": step_image_step,
    "train-resume": step_train_resume,
    "profile": step_profile,
}


# ------------------------------------------------------------------------- orchestration


def _run_step(step: Step, out: Path, args) -> dict:
    """One step in its own process, killed at its budget; its outcome, never an exception."""
    command = [sys.executable, "-m", "hsmlbench.run.gpu_check", "--step", step.name]
    command += ["--out", str(out), "--image-size", str(args.image_size)]
    command += ["--allow-cpu"] if args.allow_cpu else []
    log = out / f"{step.name}.log"
    t0 = time.perf_counter()
    with log.open("w") as stream:
        process = subprocess.Popen(
            command, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=step.budget_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the step and every process it started
            process.wait()
            code = None
    seconds = round(time.perf_counter() - t0, 1)
    result_file = out / f"{step.name}.json"
    data = json.loads(result_file.read_text()) if result_file.exists() and code == 0 else None
    if code is None:
        outcome = f"timed out after {step.budget_s} s"
    elif code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        outcome = f"failed (exit {code}): {tail[0][:200]}"
    else:
        outcome = "skipped: " + data["skipped"] if "skipped" in data else "passed"
    return {"step": step.name, "outcome": outcome, "seconds": seconds, "data": data}


def _projection(image_rows: list[dict]) -> list[str]:
    """One paper-budget T3 seed on this device, from the measured meta-iterations."""
    from hsmlbench.domains.images.configs import image_run_config

    iterations = image_run_config("T3", "maml", "1-shot", "paper").budget.iterations
    lines = []
    for row in image_rows:
        hours = iterations * row["seconds_per_iteration"] / 3600
        lines.append(
            f"- {row['method']} ({row['kernels']} kernels): {row['seconds_per_iteration'] * 1e3:.1f} "
            f"ms per meta-iteration → {iterations:,} iterations ≈ {hours:.1f} h of training "
            f"({'under' if hours < 24 else 'over'} a day; evaluation not included)"
        )
    return lines


def render(results: list[dict], environment: dict | None, wall_s: float) -> str:
    env = environment or {}
    lines = [
        "# GPU check",
        "",
        "Generated by `hsmlbench gpu-check`; do not edit by hand.",
        "",
        f"- Device: {env.get('device', '?')} (capability {env.get('capability', '?')}, "
        f"{env.get('memory_gib', '?')} GiB); date {env.get('started', '?')}",
        f"- torch {env.get('torch', '?')} (CUDA {env.get('cuda', '?')}, cuDNN "
        f"{env.get('cudnn', '?')}), Triton {env.get('triton', '?')}, Python "
        f"{env.get('python', '?')}; code versions {env.get('code_versions', '?')}",
        f"- Numerics: {env.get('numerics', '?')}",
        f"- Wall time of the whole check: {wall_s:.0f} s",
        "",
        "| step | what | outcome | seconds (budget) |",
        "|---|---|---|---|",
    ]
    budgets = {s.name: s for s in STEPS}
    for r in results:
        s = budgets[r["step"]]
        lines.append(f"| {s.name} | {s.what} | {r['outcome']} | {r['seconds']} ({s.budget_s}) |")
    by_step = {r["step"]: r["data"] for r in results if r["data"]}
    if "image-step" in by_step:
        lines += ["", "## Meta-iteration and the projected T3 paper budget", ""]
        lines += _projection(by_step["image-step"]["rows"])
        peaks = [
            f"{r['method']} ({r['kernels']}) {r['peak_gpu_mb']:.0f} MiB"
            for r in by_step["image-step"]["rows"]
            if r.get("peak_gpu_mb")
        ]
        lines.append("- peak memory: " + (", ".join(peaks) or "not measured (no CUDA)"))
    if "train-resume" in by_step:
        lines += ["", "## Killed and resumed", ""]
        for r in by_step["train-resume"]["rows"]:
            lines.append(
                f"- {r['method']}: killed after its first checkpoint {r['killed_after_first_checkpoint']}, "
                f"per-task accuracies of the resumed run bit-identical to the whole run: "
                f"{r['bit_identical']} (whole run {r['whole_run_s']} s)"
            )
    if "profile" in by_step:
        p = by_step["profile"]
        lines += ["", "## One HSML meta-iteration, profiled", ""]
        lines.append(
            f"- wall {p['wall_ms']} ms, {p['kernel_launches']} kernel launches, device busy "
            f"{p['device_busy_share']} of the wall time"
        )
        lines += [f"- {k['name']}: {k['us']} µs" for k in p["top_kernels"]]
    return "\n".join(lines) + "\n"


def run_check(out: Path, steps: list[str], image_size: int = 84, allow_cpu: bool = False) -> int:
    """The orchestrator (``hsmlbench gpu-check``); returns the exit code."""
    import torch

    from hsmlbench.atomic import write_json, write_text

    if not torch.cuda.is_available() and not allow_cpu:
        print(
            f"gpu-check: no CUDA device (torch {torch.__version__} sees none); nothing was run. "
            "Run it on a machine with a CUDA GPU (tools/gpu_check.sh installs hsmlbench beside "
            "that machine's torch).",
            file=sys.stderr,
        )
        return EXIT_NO_CUDA
    out.mkdir(parents=True, exist_ok=True)
    args = argparse.Namespace(image_size=image_size, allow_cpu=allow_cpu)
    t0, results = time.perf_counter(), []
    for step in (s for s in STEPS if s.name in steps):
        print(f"gpu-check: {step.name} (budget {step.budget_s} s) ...", flush=True)
        results.append(_run_step(step, out, args))
        print(f"gpu-check: {step.name}: {results[-1]['outcome']} ({results[-1]['seconds']} s)")
    wall = time.perf_counter() - t0
    environment = next((r["data"] for r in results if r["step"] == "environment"), None)
    write_json(out / "gpu-check.json", {"steps": results, "wall_s": wall})
    write_text(out / "gpu-check.md", render(results, environment, wall))
    print(f"gpu-check: wrote {out / 'gpu-check.md'}")
    failed = [r for r in results if not r["outcome"].startswith(("passed", "skipped"))]
    return EXIT_STEP_FAILED if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsmlbench.run.gpu_check")
    parser.add_argument("--step", choices=list(STEP_FUNCTIONS))
    parser.add_argument("--train-worker", choices=METHODS)
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("gpu-check"))
    parser.add_argument("--image-size", type=int, default=84)
    parser.add_argument("--allow-cpu", action="store_true")
    args = parser.parse_args(argv)
    if args.train_worker:
        train_and_evaluate(args.train_worker, args.image_size, args.run_dir, args.resume)
        return 0
    if args.step:
        data = STEP_FUNCTIONS[args.step](args.out, args)
        (args.out / f"{args.step}.json").write_text(json.dumps(data, indent=1, default=str))
        return 0
    return run_check(args.out, [s.name for s in STEPS], args.image_size, args.allow_cpu)


if __name__ == "__main__":
    sys.exit(main())
