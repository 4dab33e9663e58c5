"""Multimodal regression task families and their sampler (docs/PROTOCOL.md §3 "Task families").

Tasks are sampled in batches as tensors from an explicit CPU ``torch.Generator``, so the same
seed yields the same tasks on any machine; tensors move to the device afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FAMILIES: tuple[str, ...] = ("sin", "line", "quadratic", "cubic")
X_RANGE = (-5.0, 5.0)  # docs/PROTOCOL.md §3: x ~ U[-5, 5]
QUADRATIC_FORMS = ("standard", "vertex")

# Uniform ranges of each family's four coefficient slots (unused slots are [0, 0]),
# docs/PROTOCOL.md §3 "Task families".
_PARAM_RANGES: dict[str, list[tuple[float, float]]] = {
    # A, w, b: y = A·sin(w·x) + b (additive offset, as in the authors' code)
    "sin": [(0.1, 5.0), (0.8, 1.2), (0.0, 2.0 * math.pi), (0.0, 0.0)],
    # a, b: y = a·x + b
    "line": [(-3.0, 3.0), (-3.0, 3.0), (0.0, 0.0), (0.0, 0.0)],
    # standard a, b, c: y = a·x² + b·x + c
    "quadratic/standard": [(-0.2, 0.2), (-2.0, 2.0), (-3.0, 3.0), (0.0, 0.0)],
    # vertex a, b, c: y = a·(x − c)² + b (the continual code's form, used by T2)
    "quadratic/vertex": [(-0.2, 0.2), (-3.0, 3.0), (-2.0, 2.0), (0.0, 0.0)],
    # a, b, c, d: y = a·x³ + b·x² + c·x + d
    "cubic": [(-0.1, 0.1), (-0.2, 0.2), (-2.0, 2.0), (-3.0, 3.0)],
}

# Continual stream (docs/PROTOCOL.md §3 "Continual adaptation"): iteration at which each family
# joins.
CONTINUAL_SCHEDULE: tuple[tuple[int, str], ...] = (
    (0, "sin"),
    (0, "line"),
    (15_000, "quadratic"),
    (30_000, "cubic"),
)


def active_families(iteration: int) -> tuple[str, ...]:
    """Families the continual stream draws from at ``iteration``."""
    return tuple(name for start, name in CONTINUAL_SCHEDULE if iteration >= start)


@dataclass(frozen=True)
class TaskBatch:
    """A batch of T regression tasks: K support and Q query points each."""

    x_support: torch.Tensor  # [T, K, 1]
    y_support: torch.Tensor  # [T, K, 1]
    x_query: torch.Tensor  # [T, Q, 1]
    y_query: torch.Tensor  # [T, Q, 1]
    family: torch.Tensor  # [T] index into FAMILIES
    params: torch.Tensor  # [T, 4] coefficients, meaning per family (see _PARAM_RANGES)
    quadratic_form: str = "standard"

    @property
    def n_tasks(self) -> int:
        return self.x_support.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TaskBatch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)

        return TaskBatch(
            move(self.x_support),
            move(self.y_support),
            move(self.x_query),
            move(self.y_query),
            self.family.to(device),
            move(self.params),
            self.quadratic_form,
        )

    def slice(self, start: int, stop: int) -> TaskBatch:
        return TaskBatch(
            self.x_support[start:stop],
            self.y_support[start:stop],
            self.x_query[start:stop],
            self.y_query[start:stop],
            self.family[start:stop],
            self.params[start:stop],
            self.quadratic_form,
        )


def _range_key(name: str, quadratic_form: str) -> str:
    return f"quadratic/{quadratic_form}" if name == "quadratic" else name


def evaluate_family(
    family: torch.Tensor, params: torch.Tensor, x: torch.Tensor, quadratic_form: str = "standard"
) -> torch.Tensor:
    """y for each task's closed form; family [T], params [T, 4], x [T, N, 1] → [T, N, 1]."""
    if quadratic_form not in QUADRATIC_FORMS:
        raise ValueError(f"quadratic_form={quadratic_form!r}: choose one of {QUADRATIC_FORMS}")
    p = params[:, None, :]  # [T, 1, 4]
    a, b, c, d = (p[..., i : i + 1] for i in range(4))
    if quadratic_form == "standard":
        quadratic = a * x**2 + b * x + c
    else:
        quadratic = a * (x - c) ** 2 + b
    candidates = torch.stack(
        [
            a * torch.sin(b * x) + c,  # sin
            a * x + b,  # line
            quadratic,  # quadratic
            a * x**3 + b * x**2 + c * x + d,  # cubic
        ]
    )  # [4, T, N, 1]
    index = family.view(1, -1, 1, 1).expand(1, *x.shape)
    return candidates.gather(0, index)[0]


def sample_tasks(
    n_tasks: int,
    k_support: int,
    n_query: int,
    generator: torch.Generator,
    families: tuple[str, ...] = FAMILIES,
    quadratic_form: str = "standard",
    dtype: torch.dtype = torch.float32,
) -> TaskBatch:
    """Draws ``n_tasks`` tasks, each from a family picked uniformly among ``families``."""
    unknown = set(families) - set(FAMILIES)
    if unknown or not families:
        raise ValueError(f"unknown task families {sorted(unknown)}; known: {FAMILIES}")
    if quadratic_form not in QUADRATIC_FORMS:
        raise ValueError(f"quadratic_form={quadratic_form!r}: choose one of {QUADRATIC_FORMS}")
    family_ids = torch.tensor([FAMILIES.index(f) for f in families])
    choice = torch.randint(len(families), (n_tasks,), generator=generator)
    family = family_ids[choice]
    ranges = torch.tensor(
        [_PARAM_RANGES[_range_key(name, quadratic_form)] for name in FAMILIES], dtype=torch.float64
    )  # [4 families, 4 slots, 2]
    low, high = ranges[family, :, 0], ranges[family, :, 1]
    u = torch.rand(n_tasks, 4, generator=generator, dtype=torch.float64)
    params = low + (high - low) * u
    x = torch.rand(n_tasks, k_support + n_query, 1, generator=generator, dtype=torch.float64)
    x = X_RANGE[0] + (X_RANGE[1] - X_RANGE[0]) * x
    y = evaluate_family(family, params, x, quadratic_form)
    return TaskBatch(
        x[:, :k_support].to(dtype),
        y[:, :k_support].to(dtype),
        x[:, k_support:].to(dtype),
        y[:, k_support:].to(dtype),
        family,
        params.to(dtype),
        quadratic_form,
    )
