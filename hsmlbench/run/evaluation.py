"""Evaluation on fixed test tasks, for every domain (docs/PROTOCOL.md §3 "Evaluation", §4, §5).

Every method and seed sees the same tasks: the domain draws them from ``config.eval_seed``,
never from the run's seed. For each task we record the query metric (MSE or accuracy) before
adaptation and after each test-time inner step; the headline is the value after the last step.
"""

from __future__ import annotations

import numpy as np

from hsmlbench.domains.base import EvalResult


def evaluate(model, config, data_root=None, device="cpu", cells=None) -> dict[str, EvalResult]:
    """Metric curves of ``model`` on each of its domain's test cells (regression: one cell,
    named ""; images: one per dataset), in chunks of ``config.eval_chunk`` tasks."""
    from hsmlbench.domains import domain_for

    if cells is None:
        cells = domain_for(config.table).evaluation_cells(config, data_root)
    model.eval()
    results = {}
    for cell in cells:
        curves, assignments = [], {}
        for chunk in cell.chunks(config.eval_chunk):
            curve, ctx = model.query_curve(chunk.to(device), config.inner_steps_test)
            curves.append(curve.detach().cpu().numpy())
            for name, value in ctx.assignments.items():
                assignments.setdefault(name, []).append(value.detach().cpu().numpy())
        curve = np.concatenate(curves)
        if not np.isfinite(curve).all():
            bad = int((~np.isfinite(curve)).any(axis=1).sum())
            where = f" on {cell.label}" if cell.label else ""
            raise FloatingPointError(
                f"{config.job_name}: {bad} of {len(curve)} test tasks{where} have a non-finite "
                "query metric; the trained model diverged (check the training loss curve)"
            )
        results[cell.name] = EvalResult(
            curve, cell.groups, {k: np.concatenate(v) for k, v in assignments.items()}
        )
    return results
