"""Code versions (docs/PROTOCOL.md §6 "Provenance"): a hash of exactly the code that measures.

A job's code version covers the modules whose source decides what its raw file holds: its
domain, the methods, training, evaluation, the one job runner and the raw-record builder
(``hsmlbench.results``), the configs and the kernels, found from these modules' imports
(lazy ones included). Not statistics, tables, figures, progress, the CLI, the grid's
orchestration, the executors or ``verify``: changing those re-renders finished jobs instead of
invalidating them. ``tests/test_code_version.py`` checks that every hsmlbench module that runs
while a job builds its record is inside the version.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from pathlib import Path

import hsmlbench

CODE_VERSION_FILE = "code_version.txt"  # beside a checkpoint: the code that started it


def _module_file(name: str) -> Path | None:
    """The source file of an hsmlbench module, found without importing it."""
    parts = name.split(".")
    if parts[:2] == ["hsmlbench", "kernels"]:
        spec = importlib.util.find_spec("hsmlbench.kernels")  # imports hsmlbench only
        root, rest = Path(list(spec.submodule_search_locations)[0]), parts[2:]
    else:
        root, rest = Path(hsmlbench.__file__).parent, parts[1:]
    base = root.joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path, module: str) -> frozenset[str]:
    """Every hsmlbench module that ``path`` imports anywhere (top level or in a function).

    Parsed once per file version (keyed by modification time and size): every job of a grid
    asks for the code version, and parsing the closure each time cost 0.14 s."""
    stat = path.stat()
    return _parsed_imports(path, module, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=512)
def _parsed_imports(path: Path, module: str, mtime_ns: int, size: int) -> frozenset[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # submodules
    return frozenset(n for n in names if n == "hsmlbench" or n.startswith("hsmlbench."))


JOB_DEFINING_ROOTS = {
    "regression": ("hsmlbench.domains.regression.domain", "hsmlbench.methods.builtin"),
    "images": (
        "hsmlbench.domains.images.domain",
        "hsmlbench.domains.images.models",
        "hsmlbench.domains.images.methods",
    ),
}
_SHARED_ROOTS = ("hsmlbench.run.single_job", "hsmlbench.results.record")
NOT_JOB_DEFINING = (
    "hsmlbench.report",
    "hsmlbench.cli",
    "hsmlbench.run.progress",
    "hsmlbench.run.grid",
    "hsmlbench.run.executors",
    "hsmlbench.run.projection",
    "hsmlbench.run.verify",
)


def code_version(domain: str = "regression") -> str:
    """The package version plus a hash of the job-defining source of ``domain``'s jobs
    (``job_sources``), read from the files on disk when asked: a job records it when it
    starts, a grid when it is planned."""
    digest = hashlib.sha256()
    for module, path in sorted(job_sources(domain).items()):
        digest.update(module.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{hsmlbench.__version__}+{digest.hexdigest()[:12]}"


def job_code_version(job, version: str) -> str:
    """``version`` (hsmlbench's code) plus, for a plugin method, a hash of the plugin's source:
    a changed plugin is never reused."""
    from hsmlbench.methods.registry import plugin_source_hash

    plugin = plugin_source_hash(job.config.method)  # an ablation varies a registered method
    if plugin is None or version.endswith(f"+plugin-{plugin}"):
        return version
    return f"{version}+plugin-{plugin}"


def _excluded(module: str, domain: str) -> bool:
    other_domains = [f"hsmlbench.domains.{d}" for d in JOB_DEFINING_ROOTS if d != domain]
    if domain == "images":  # the image domain reuses regression's stream helpers
        other_domains = []
    return any(
        module == prefix or module.startswith(prefix + ".")
        for prefix in (*NOT_JOB_DEFINING, *other_domains)
    )


def job_sources(domain: str = "regression") -> dict[str, Path]:
    """Module name → source file of every hsmlbench module that defines what ``domain``'s
    jobs compute (what ``code_version`` hashes): the import closure of the domain's roots and
    of training and evaluation, lazy imports included, minus ``NOT_JOB_DEFINING``."""
    todo, files = [*JOB_DEFINING_ROOTS[domain], *_SHARED_ROOTS], {}
    while todo:
        name = todo.pop()
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        for module in [*parents, name]:
            if module in files or _excluded(module, domain):
                continue
            path = _module_file(module)
            files[module] = path
            if path is not None:
                todo += sorted(_imported_names(path, module) - files.keys())
    return {module: path for module, path in files.items() if path is not None}
