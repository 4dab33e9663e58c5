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


def _flat(config) -> dict:
    """A config as one flat dict of dotted keys (nested settings included)."""
    out = {}
    for key, value in config.to_dict().items():
        if isinstance(value, dict) and key != "budget":
            out |= {f"{key}.{k}": v for k, v in value.items()}
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(
    "variant, changed",
    [
        (
            "mumomaml-noclip",
            {
                "outer_grad_clip": None,
                "mumomaml.outer_grad_clip": None,
                "mumomaml.inner_grad_clamp": None,
            },
        ),
        ("maml-clipped", {"inner_grad_clamp": 10.0, "outer_grad_clip": 2.0}),
        ("hsml-clipped", {"inner_grad_clamp": 10.0, "outer_grad_clip": 2.0}),
        ("mumomaml-separate-clip", {"outer_clip_groups": "separate"}),
        ("mumomaml-gamma-only", {"mumomaml.modulation": "gamma_only"}),
        ("mumomaml-sigmoid-gate", {"mumomaml.modulation": "sigmoid_gate"}),
        ("hsml-torch-init", {"hsml.init": "torch"}),
        ("hsml-centres", {"hsml.level2": "centres"}),
        ("hsml-autograd", {"meta_step": "autograd"}),
    ],
)
def test_each_ablation_changes_exactly_what_it_says(variant, changed):
    """Against the paper row it varies (T1, same setting and budget): only the named fields
    differ, besides the table and the variant's name."""
    ablation = run_config("ablations", variant, "5-shot", "smoke", meta_step="fast")
    base = run_config("T1", ablation.method, "5-shot", "smoke", meta_step="fast")
    a, b = _flat(ablation), _flat(base)
    differing = {k: a.get(k) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert differing == {"table": "ablations", "variant": variant, **changed}
    assert ablation.job_name == f"ablations-{variant}-5-shot"
