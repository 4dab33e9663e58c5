"""The paper's image methods (T3, T4), registered in ``hsmlbench.methods.registry`` exactly as
a plug-in registers its own (this module is the ``hsmlbench.methods`` entry point named
``images``), with their settings.

Each name is the regression method's name (``hsmlbench.methods.builtin``): registering it
here for ``domains=("images",)`` adds the image factory to the same method. The models are
in ``hsmlbench.domains.images.models``, imported when a factory is called.
"""

from __future__ import annotations

from dataclasses import dataclass

from hsmlbench.methods.registry import register_method


@dataclass(frozen=True)
class ImageHSMLSettings:
    """HSML's image task representation, tree and gates (docs/PROTOCOL.md §4, §3 steps 2-3)."""

    features: int = 64  # per-image CNN output
    feature_filters: int = 32
    hidden: int = 128  # d
    clusters: tuple[int, ...] = (4, 2)  # 4 → 2 → 1
    sigma: float = 10.0
    reconstruction_weight: float = 0.01  # ξ (the authors' --emb_loss_weight=0.01)
    level2: str = "code"
    init: str = "authors"  # as HSMLSettings.init (docs/PROTOCOL.md §3 "HSML" steps 1-2)


@dataclass(frozen=True)
class ImageMUMOMAMLSettings:
    """MUMOMAML's image encoder with the gradient limits of its authors' classification code:
    inner-gradient clamp ±20, no outer clip (docs/PROTOCOL.md §4 "MUMOMAML image encoder";
    the earlier ±10 / 2.0 were their regression code's, §3 "MUMOMAML")."""

    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    embedding: int = 128
    inner_grad_clamp: float = 20.0
    outer_grad_clip: float | None = None


@dataclass(frozen=True)
class ImageContinualSettings:
    """T4's stream and HSML-D's growth rule (docs/PROTOCOL.md §4 "Continual classification").

    ``arrivals`` are the iterations at which each dataset joins, at the paper's 40,000
    iterations; Aircraft at 15,000, Fungi at 30,000 (the source says only "later":
    hsmlbench's choice, the same as regression's cubic family). The authors' code grows the
    stream by one dataset each time HSML-D adds a cluster; hsmlbench uses one fixed stream for
    every method so that the methods are compared on the same data (docs/PROTOCOL.md §4).
    """

    arrivals: tuple[tuple[int, str], ...] = (
        (0, "bird"),
        (0, "texture"),
        (15_000, "aircraft"),
        (30_000, "fungi"),
    )
    reference_iterations: int = 40_000
    grow: bool = False  # HSML-D adds first-level clusters
    window: int = 100  # iterations per window
    drop_ratio: float = 0.85  # add when window accuracy < ratio · previous window's
    cooldown: int = 8_000  # iterations between two additions

    def scale(self, iterations: int) -> float:
        return iterations / self.reference_iterations

    def arrival(self, dataset_index: int, iterations: int) -> int:
        return round(self.arrivals[dataset_index][0] * self.scale(iterations))

    def window_at(self, iterations: int) -> int:
        return max(2, round(self.window * self.scale(iterations)))

    def cooldown_at(self, iterations: int) -> int:
        return max(1, round(self.cooldown * self.scale(iterations)))


# Every factory builds the base learner first and the model second (the order, and so the
# random draws, that a seed's parameters have always come from).


@register_method("maml", domains=("images",), label="MAML", builtin=True)
def _maml(config):
    from hsmlbench.domains.images.models import ImageMAML, image_learner

    learner = image_learner(config)
    return ImageMAML(learner, config.k_shot, config.inner_lr, config.second_order)


@register_method(
    "mumomaml",
    domains=("images",),
    settings=ImageMUMOMAMLSettings,
    label="MUMOMAML",
    builtin=True,
)
def _mumomaml(config):
    from hsmlbench.domains.images.models import ImageMUMOMAML, image_learner

    learner = image_learner(config)
    return ImageMUMOMAML(
        learner, config.mumomaml, config.k_shot, config.inner_lr, config.second_order
    )


def _image_hsml(config):
    """HSML, and on T4's stream (``config.continual``) HSML-S/D: a growable first level, and
    for HSML-D (``continual.grow``) the rule that grows it."""
    from hsmlbench.domains.images.models import ImageHSML, image_learner

    learner = image_learner(config)
    model = ImageHSML(
        learner,
        config.hsml,
        config.k_shot,
        config.inner_lr,
        config.image_size,
        config.second_order,
        growable=config.continual is not None,
    )
    if config.continual is not None and config.continual.grow:
        model.grow_with(config.continual, config.budget.iterations)
    return model


register_method(
    "hsml", domains=("images",), settings=ImageHSMLSettings, label="HSML", builtin=True
)(_image_hsml)
for _name, _label in (
    ("hsml-s2", "HSML-S (2C)"),
    ("hsml-s10", "HSML-S (10C)"),
    ("hsml-d", "HSML-D"),
):
    register_method(
        _name, domains=("images",), settings=ImageContinualSettings, label=_label, builtin=True
    )(_image_hsml)
