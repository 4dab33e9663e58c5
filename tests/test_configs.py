"""Which stored configs a run accepts as its own (reuse of finished jobs, resuming checkpoints)."""

import dataclasses

import pytest

from hsmlbench.domains.images.configs import image_run_config
from hsmlbench.domains.regression.configs import run_config


@pytest.mark.parametrize(
    "config",
    [
        run_config("T1", "hsml", "5-shot", "paper"),
        image_run_config("T3", "mumomaml", "1-shot", "paper"),
    ],
    ids=["regression", "images"],
)
def test_budget_description_is_a_label_not_part_of_the_run(config):
    stored = config.to_dict()
    assert config.matches(stored)
    # results written while the description read differently are still this run's
    reworded = stored | {"budget": stored["budget"] | {"description": "older wording"}}
    assert config.matches(reworded)
    # what the budget does is compared
    longer = stored | {"budget": stored["budget"] | {"iterations": 1}}
    assert not config.matches(longer)
    other_budget = dataclasses.replace(config.budget, n_test_tasks=7)
    assert not dataclasses.replace(config, budget=other_budget).matches(stored)


def test_image_mumomaml_takes_its_authors_classification_limits():
    """docs/PROTOCOL.md §4 "MUMOMAML image encoder": clamp ±20, no outer clip."""
    config = image_run_config("T3", "mumomaml", "1-shot", "paper")
    assert config.mumomaml.inner_grad_clamp == 20.0
    assert config.outer_grad_clip is None
    regression = run_config("T1", "mumomaml", "5-shot", "paper")  # its regression code: ±10, 2.0
    assert (regression.mumomaml.inner_grad_clamp, regression.outer_grad_clip) == (10.0, 2.0)
