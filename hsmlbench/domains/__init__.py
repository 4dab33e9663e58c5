"""Domains: what a task is. Each says how meta-batches and the fixed test tasks are drawn, its
base learner, loss and metric, and its tables; training, evaluation, the grid and the CLI
(``hsmlbench.run``, ``hsmlbench.cli``) are written once and take a domain object."""

from __future__ import annotations

import functools


@functools.cache
def domains() -> dict:
    """Every domain by name (imported on first use: the image domain pulls in its data code)."""
    from hsmlbench.domains.images.domain import ImageDomain
    from hsmlbench.domains.regression.domain import RegressionDomain

    return {"regression": RegressionDomain(), "images": ImageDomain()}


def all_tables() -> dict:
    """Table name → its ``TableSpec``, over every domain (T1, T2, T3, T4 and the synthetic
    image tables)."""
    return {name: spec for d in domains().values() for name, spec in d.tables.items()}


def domain_for(table: str):
    """The domain of ``table``; KeyError naming every known table otherwise."""
    for domain in domains().values():
        if table in domain.tables:
            return domain
    known = ", ".join(name for name in all_tables() if not name.endswith("-synthetic"))
    raise KeyError(f"unknown table {table!r}; known: {known}")


def run_config(table: str, method: str, setting: str, budget: str, overrides=None):
    """The config of one table cell at a budget, from the table's domain. ``overrides``
    (``--set``): field → value of a plug-in method's settings, replacing their defaults; a
    KeyError names a field the settings do not have, or a method without plug-in settings."""
    import dataclasses

    config = domain_for(table).run_config(table, method, setting, budget)
    if not overrides:
        return config
    overrides = dict(overrides)  # a dict, or a Job's (field, value) pairs
    defaults = config.plugin_settings
    if defaults is None:
        raise KeyError(
            f"--set {method}.…: {method!r} has no plug-in settings in {table} (the paper's "
            "methods keep the protocol's settings)"
        )
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise KeyError(
            f"--set {method}.{unknown[0]}: {method!r} has no setting {unknown[0]!r}; its "
            f"settings: {', '.join(defaults)}"
        )
    return dataclasses.replace(config, plugin_settings={**defaults, **overrides})
