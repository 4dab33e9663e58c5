"""Method name → model factory: the one place that knows every method."""

from __future__ import annotations

from hsmlbench.configs import RunConfig
from hsmlbench.meta_learner import MetaLearner


def build_model(config: RunConfig) -> MetaLearner:
    """A freshly initialized model for ``config`` (seed torch first for a reproducible init),
    on the config's meta-step path."""
    model = _new_model(config)
    model.meta_step = config.meta_step
    return model


def _new_model(config: RunConfig) -> MetaLearner:
    if config.method == "maml":
        from hsmlbench.maml import MAML

        return MAML(config.inner_lr, config.second_order)
    if config.continual is not None and config.method.startswith("hsml"):
        from hsmlbench.continual import ContinualHSML

        return ContinualHSML(config.hsml, config.continual, config.inner_lr, config.second_order)
    if config.method == "hsml":
        from hsmlbench.hsml import HSML

        return HSML(config.hsml, config.inner_lr, config.second_order)
    if config.method == "mumomaml":
        from hsmlbench.mumomaml import MUMOMAML

        return MUMOMAML(config.mumomaml, config.inner_lr, config.second_order)
    raise KeyError(f"unknown method {config.method!r}")
