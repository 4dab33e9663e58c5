import math

import numpy as np
import pytest
import torch
from scipy import stats

from hsmlbench.domains.regression.tasks import FAMILIES, active_families, sample_tasks
from hsmlbench.seeding import task_generator


def closed_form(family: str, p: np.ndarray, x: np.ndarray, quadratic_form: str) -> np.ndarray:
    """Each family written out by hand from docs/PROTOCOL.md §3."""
    if family == "sin":
        return p[0] * np.sin(p[1] * x) + p[2]
    if family == "line":
        return p[0] * x + p[1]
    if family == "quadratic" and quadratic_form == "standard":
        return p[0] * x**2 + p[1] * x + p[2]
    if family == "quadratic":
        return p[0] * (x - p[2]) ** 2 + p[1]
    return p[0] * x**3 + p[1] * x**2 + p[2] * x + p[3]


@pytest.mark.parametrize("quadratic_form", ["standard", "vertex"])
def test_each_family_matches_its_closed_form(quadratic_form):
    batch = sample_tasks(
        400, 5, 10, task_generator(0), quadratic_form=quadratic_form, dtype=torch.float64
    )
    for i in range(batch.n_tasks):
        name = FAMILIES[int(batch.family[i])]
        p = batch.params[i].numpy()
        for x, y in ((batch.x_support, batch.y_support), (batch.x_query, batch.y_query)):
            np.testing.assert_allclose(
                y[i, :, 0].numpy(),
                closed_form(name, p, x[i, :, 0].numpy(), quadratic_form),
                rtol=1e-12,
            )


def test_parameter_and_input_ranges():
    batch = sample_tasks(4000, 10, 10, task_generator(1), dtype=torch.float64)
    assert batch.x_support.min() >= -5 and batch.x_query.max() <= 5
    sin = batch.params[batch.family == 0]
    assert sin[:, 0].min() >= 0.1 and sin[:, 0].max() <= 5.0
    assert sin[:, 1].min() >= 0.8 and sin[:, 1].max() <= 1.2
    assert sin[:, 2].min() >= 0.0 and sin[:, 2].max() <= 2 * math.pi
    cubic = batch.params[batch.family == 3]
    assert cubic[:, 0].abs().max() <= 0.1 and cubic[:, 3].abs().max() <= 3.0


def test_families_are_uniform():
    batch = sample_tasks(40_000, 1, 1, task_generator(2))
    counts = np.bincount(batch.family.numpy(), minlength=4)
    assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_same_seed_same_tasks_and_different_seed_different_tasks():
    a = sample_tasks(50, 5, 10, task_generator(7))
    b = sample_tasks(50, 5, 10, task_generator(7))
    c = sample_tasks(50, 5, 10, task_generator(8))
    assert torch.equal(a.x_support, b.x_support) and torch.equal(a.y_query, b.y_query)
    assert not torch.equal(a.x_support, c.x_support)


def test_restricted_families_are_respected():
    batch = sample_tasks(500, 5, 10, task_generator(3), families=("sin", "line"))
    assert set(batch.family.tolist()) == {0, 1}


def test_continual_schedule_switches_at_15000_and_30000():
    assert active_families(0) == ("sin", "line")
    assert active_families(14_999) == ("sin", "line")
    assert active_families(15_000) == ("sin", "line", "quadratic")
    assert active_families(29_999) == ("sin", "line", "quadratic")
    assert active_families(30_000) == FAMILIES


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task families"):
        sample_tasks(5, 5, 10, task_generator(0), families=("sine",))
