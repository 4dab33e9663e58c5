"""The grid's jobs: one (table, method, setting, seed) at a budget, and where its files live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hsmlbench.domains import domain_for, run_config
from hsmlbench.results.schema import raw_file_path


@dataclass(frozen=True)
class Job:
    table: str
    method: str
    setting: str
    seed: int
    budget: str

    @property
    def name(self) -> str:
        return f"{self.table}-{self.method}-{self.setting}-seed{self.seed}"

    @property
    def config(self):
        return run_config(self.table, self.method, self.setting, self.budget)

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
) -> list[Job]:
    """The grid of jobs; raises KeyError naming the first unknown table, method, setting or
    budget."""
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
                run_config(table, method, setting, budget)  # an unknown method fails here
                jobs += [Job(table, method, setting, seed, budget) for seed in range(seeds)]
    return jobs


def raw_path(out_dir: Path, job: Job) -> Path:
    return raw_file_path(out_dir, job.table, job.name, job.budget)


def run_dir(work_dir: Path, job: Job) -> Path:
    """The job's checkpoints (and, after a failure, its ``error.txt``)."""
    return Path(work_dir) / job.budget / job.name


def error_path(work_dir: Path, job: Job) -> Path:
    return run_dir(work_dir, job) / "error.txt"
