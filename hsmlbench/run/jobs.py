"""The grid's jobs: one (table, method, setting, seed) at a budget, and where its files live."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hsmlbench.domains import domain_for, run_config
from hsmlbench.methods.registry import BrokenMethodError
from hsmlbench.results.schema import raw_file_path


@dataclass(frozen=True)
class Job:
    table: str
    method: str
    setting: str
    seed: int
    budget: str
    # ``--set``: (field, value) pairs replacing a plug-in method's default settings. They are
    # part of the job's identity: its row, its raw file's name and its config.
    overrides: tuple[tuple[str, object], ...] = ()

    @property
    def row_method(self) -> str:
        """The method as its table rows name it: ``metasgd[alpha_max=0.1]`` with overrides."""
        if not self.overrides:
            return self.method
        return f"{self.method}[{','.join(f'{k}={v!r}' for k, v in self.overrides)}]"

    @property
    def name(self) -> str:
        method = self.method
        if self.overrides:  # a short stable hash: file names stay plain
            digest = hashlib.sha256(repr(self.overrides).encode()).hexdigest()[:8]
            method = f"{method}+set{digest}"
        return f"{self.table}-{method}-{self.setting}-seed{self.seed}"

    @property
    def config(self):
        return run_config(self.table, self.method, self.setting, self.budget, self.overrides)

    @property
    def domain(self):
        return domain_for(self.table)

    @property
    def device(self) -> str:
        """Where the job computes: its domain's default here (images: CUDA when there is one)."""
        return str(self.domain.device())

    @property
    def gpus(self) -> int:
        """GPUs the job asks a cluster for (Ray's ``num_gpus``)."""
        return 1 if self.device.startswith("cuda") else 0


def plan(
    tables: list[str],
    methods: list[str] | None,
    seeds: int,
    budget: str,
    settings: list[str] | None = None,
    overrides: dict[str, dict] | None = None,
) -> list[Job]:
    """The grid of jobs; raises KeyError naming the first unknown table, method, setting or
    budget, or a ``--set`` the method does not have. ``overrides``: method → {field: value}."""
    overrides = overrides or {}
    unplanned = sorted(set(overrides) - set(methods or ()))
    if unplanned:
        raise KeyError(f"--set {unplanned[0]}.…: add {unplanned[0]!r} to --methods")
    jobs = []
    for table in tables:
        domain = domain_for(table)
        spec = domain.tables[table]
        if budget not in domain.budgets(table):
            raise KeyError(f"unknown budget {budget!r}; known: {', '.join(domain.budgets(table))}")
        for method in methods or spec.methods:
            for setting in settings or spec.settings:
                if setting not in spec.settings:
                    raise KeyError(
                        f"table {table} has no setting {setting!r}; it has: {', '.join(spec.settings)}"
                    )
                changed = tuple(sorted(overrides.get(method, {}).items()))
                try:  # an unknown method, or a --set it does not have, fails here
                    run_config(table, method, setting, budget, changed)
                except BrokenMethodError:
                    pass  # a broken plug-in's jobs fail when run, naming it; the others run
                jobs += [
                    Job(table, method, setting, seed, budget, changed) for seed in range(seeds)
                ]
    return jobs


def raw_path(out_dir: Path, job: Job) -> Path:
    return raw_file_path(out_dir, job.table, job.name, job.budget)


def run_dir(work_dir: Path, job: Job) -> Path:
    """The job's checkpoints (and, after a failure, its ``error.txt``)."""
    return Path(work_dir) / job.budget / job.name


def error_path(work_dir: Path, job: Job) -> Path:
    return run_dir(work_dir, job) / "error.txt"
