"""The paper's regression methods, registered in ``hsmlbench.methods.registry`` exactly as a
plug-in registers its own (this module is the ``hsmlbench.methods`` entry point named
``regression``, loaded by the registry), and ``build_model``, which builds any registered
regression method, plug-ins included."""

from __future__ import annotations

from hsmlbench.methods.continual import ContinualSettings
from hsmlbench.methods.hsml import HSMLSettings
from hsmlbench.methods.meta_learner import MetaLearner
from hsmlbench.methods.mumomaml import MUMOMAMLSettings
from hsmlbench.methods.registry import get_method, register_method


def build_model(config) -> MetaLearner:
    """A freshly initialized model for ``config`` (seed torch first for a reproducible init),
    on the config's meta-step path."""
    model = get_method(config.method).build("regression", config)
    if config.meta_step == "fast" and not model.supports_fast_meta_step():
        raise ValueError(
            f"method {config.method!r} overrides predict, support_loss or task_loss without "
            "explicit_support_grads, so the fast meta-step would not compute its meta-gradient; "
            "register it with meta_steps=('autograd',) (docs/ADDING_A_METHOD.md §2)"
        )
    model.meta_step = config.meta_step
    if getattr(config, "inner_grad_clamp", None) is not None:  # an ablation's override
        model.inner_grad_clamp = config.inner_grad_clamp
    return model


@register_method("maml", label="MAML", builtin=True)
def _maml(config) -> MetaLearner:
    from hsmlbench.methods.maml import MAML

    return MAML(config.inner_lr, config.second_order)


@register_method("mumomaml", label="MUMOMAML", settings=MUMOMAMLSettings, builtin=True)
def _mumomaml(config) -> MetaLearner:
    from hsmlbench.methods.mumomaml import MUMOMAML

    return MUMOMAML(config.mumomaml, config.inner_lr, config.second_order)


@register_method("hsml", label="HSML", settings=HSMLSettings, builtin=True)
def _hsml(config) -> MetaLearner:
    from hsmlbench.methods.hsml import HSML

    return HSML(config.hsml, config.inner_lr, config.second_order)


def _continual_hsml(config) -> MetaLearner:
    from hsmlbench.methods.continual import ContinualHSML

    return ContinualHSML(config.hsml, config.continual, config.inner_lr, config.second_order)


for _name, _label in (
    ("hsml-s2", "HSML-S (2C)"),
    ("hsml-s10", "HSML-S (10C)"),
    ("hsml-d", "HSML-D"),
):
    register_method(_name, label=_label, settings=ContinualSettings, builtin=True)(_continual_hsml)
