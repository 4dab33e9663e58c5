"""Continual HSML (docs/PROTOCOL.md §3 "Continual adaptation"): HSML-S keeps its first-level
clusters fixed; HSML-D adds one when the post-adaptation query loss jumps as new task families
arrive.

Level-1 clusters are stored one parameter set per cluster, so adding a cluster appends new
parameters with fresh optimizer state (a new Adam parameter group) and leaves every existing
parameter, and its Adam moments, untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hsmlbench.methods.base_learners import glorot_uniform_
from hsmlbench.methods.hsml import HSML, ClusterTree, HSMLSettings, tree_bias_init


@dataclass(frozen=True)
class ContinualSettings:
    """Continual stream and HSML-D's growth rule (docs/PROTOCOL.md §3 "Continual adaptation")."""

    grow: bool = False  # HSML-D adds first-level clusters; HSML-S keeps them fixed
    window: int = 1_000  # Q: iterations per window
    growth_ratio: float = 1.25  # μ: add when window loss > μ · previous window loss
    cooldown: int = 8_000  # iterations that must pass between two additions


def should_grow(
    window_losses: list[float], iteration: int, last_addition: int | None, rule: ContinualSettings
) -> bool:
    """HSML-D's trigger, checked at the end of each window of ``rule.window`` iterations.

    ``window_losses`` are the mean post-adaptation query losses of the finished windows, newest
    last; ``iteration`` is the number of iterations done; ``last_addition`` the iteration of the
    last added cluster (None before the first: no cool-down applies then).
    """
    if len(window_losses) < 2:
        return False
    jumped = window_losses[-1] > rule.growth_ratio * window_losses[-2]
    cooled = last_addition is None or iteration - last_addition >= rule.cooldown
    return jumped and cooled


class GrowableClusterTree(ClusterTree):
    """A ClusterTree whose level-1 clusters are separate parameters, so clusters can be added."""

    def _init_level1(self, k1: int, dim: int) -> None:
        self.centres_k = nn.ParameterList()
        self.w1_k = nn.ParameterList()
        self.b1_k = nn.ParameterList()
        for _ in range(k1):
            self.add_cluster()

    def add_cluster(self) -> list[nn.Parameter]:
        """Appends one cluster: Glorot-uniform centre and transform, bias as the tree's
        ``bias_init`` (docs/PROTOCOL.md §3 "Continual adaptation")."""
        k, dim = len(self.centres_k) + 1, self.dim
        like = self.centres_k[0] if len(self.centres_k) else None
        kwargs = {} if like is None else {"dtype": like.dtype, "device": like.device}
        new = [
            nn.Parameter(glorot_uniform_(torch.empty(dim, **kwargs), k, dim)),
            nn.Parameter(glorot_uniform_(torch.empty(dim, dim, **kwargs), dim, dim)),
            nn.Parameter(self.new_bias(dim, **kwargs)),
        ]
        self.centres_k.append(new[0])
        self.w1_k.append(new[1])
        self.b1_k.append(new[2])
        return new

    def level1(self):
        return (
            torch.stack(list(self.centres_k)),
            torch.stack(list(self.w1_k)),
            torch.stack(list(self.b1_k)),
        )


class GrowingFirstLevel:
    """What a model whose ``tree`` is a ``GrowableClusterTree`` needs to grow: adding a cluster,
    re-creating its clusters before a checkpoint loads, and one Adam group per added cluster.
    Shared by regression (``ContinualHSML``) and image HSML-D."""

    tree: GrowableClusterTree

    def init_growth(self, initial_clusters: int) -> None:
        self.initial_clusters = initial_clusters
        self.added: list[list[nn.Parameter]] = []
        self.last_addition: int | None = None

    def add_cluster(self) -> list[nn.Parameter]:
        new = self.tree.add_cluster()
        self.added.append(new)
        return new

    def growth_state(self) -> dict:
        return {"n_clusters": self.tree.n_clusters, "last_addition": self.last_addition}

    def load_growth_state(self, state: dict) -> None:
        """Before loading a checkpoint: re-create the clusters it had (values come after)."""
        while self.tree.n_clusters < state.get("n_clusters", self.initial_clusters):
            self.add_cluster()
        self.last_addition = state.get("last_addition")

    def optimizer_groups(self) -> list[dict]:
        """One Adam group for the original parameters, one per added cluster (its fresh state)."""
        added = {id(p) for group in self.added for p in group}
        base = [p for p in self.parameters() if id(p) not in added]
        return [{"params": base}] + [{"params": group} for group in self.added]


class ContinualHSML(GrowingFirstLevel, HSML):
    """HSML on a task stream; with ``rule.grow`` it is HSML-D, otherwise HSML-S."""

    def __init__(
        self,
        settings: HSMLSettings,
        rule: ContinualSettings,
        inner_lr: float,
        second_order: bool = True,
    ) -> None:
        tree = GrowableClusterTree(
            settings.hidden,
            settings.clusters,
            settings.sigma,
            settings.level2,
            tree_bias_init(settings),
        )
        super().__init__(settings, inner_lr, second_order, tree=tree)
        self.rule = rule
        self.init_growth(settings.clusters[0])

    def after_iteration(self, iteration: int, query_losses: list[float], optimizer, events: list):
        """At each window's end, HSML-D adds a cluster if the loss jumped (``should_grow``)."""
        done = iteration + 1
        if not self.rule.grow or done % self.rule.window:
            return optimizer
        q = self.rule.window
        windows = [float(np.mean(query_losses[i : i + q])) for i in range(0, done, q)]
        if should_grow(windows, done, self.last_addition, self.rule):
            new = self.add_cluster()
            optimizer.add_param_group({"params": new})
            self.last_addition = done
            events.append(
                {
                    "event": "cluster_added",
                    "iteration": done,
                    "window_loss": windows[-1],
                    "previous_window_loss": windows[-2],
                    "ratio": windows[-1] / windows[-2] if windows[-2] else math.inf,
                    "n_clusters": self.tree.n_clusters,
                }
            )
        return optimizer
