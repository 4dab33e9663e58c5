"""The regression tables' settings as frozen dataclasses, from a registry keyed by table and row.

Values from the paper cite ``docs/PROTOCOL.md`` by section. A budget only
shortens a run (iterations, test tasks); it never changes the method.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hsmlbench.configs import EVAL_SEED, Budget, TableSpec, config_matches
from hsmlbench.methods.continual import ContinualSettings
from hsmlbench.methods.hsml import HSMLSettings
from hsmlbench.methods.meta_step import DEFAULT_META_STEP, check_meta_step, meta_step_from_env
from hsmlbench.methods.mumomaml import MUMOMAMLSettings
from hsmlbench.methods.registry import get_method

BUDGETS: dict[str, Budget] = {
    "smoke": Budget("smoke", 60, 200, 20, "CI smoke test: the whole path, numbers meaningless"),
    "quick": Budget("quick", 5_000, 1_000, 1_000, "reduced"),
    # docs/PROTOCOL.md §3: 70,000 iterations, 4,000 test tasks.
    "paper": Budget("paper", 70_000, 4_000, 5_000, "docs/PROTOCOL.md §3 exactly"),
}


@dataclass(frozen=True)
class RunConfig:
    """One cell of a table: a method at a setting, trained and evaluated at a budget."""

    table: str
    method: str
    setting: str
    budget: Budget
    k_shot: int = 5
    n_query: int = 10  # docs/PROTOCOL.md §3 "Episodes"
    inner_lr: float = 0.001  # α, docs/PROTOCOL.md §3 "Meta-training"
    inner_steps_train: int = 5
    inner_steps_test: int = 10
    second_order: bool = True
    # "fast" (explicit inner gradients, compiled) or "autograd" (the reference): the same
    # second-order meta-gradient; see hsmlbench.methods.meta_step. Part of the job's identity.
    meta_step: str = DEFAULT_META_STEP
    meta_batch: int = 25
    outer_lr: float = 0.001  # Adam
    outer_grad_clip: float | None = None
    # The MUMOMAML authors' code clips the embedding network's and the model's gradients each
    # to the norm ("separate"); "joint" (the default, None) clips them as one vector.
    outer_clip_groups: str | None = None
    # An inner-gradient clamp for any method (ablations: MAML or HSML with MUMOMAML's ±10);
    # None: the method's own (MUMOMAML's settings), else none.
    inner_grad_clamp: float | None = None
    quadratic_form: str = "standard"  # docs/PROTOCOL.md §3: T1 standard, T2 vertex
    continual: ContinualSettings | None = None  # None: all families from the start
    hsml: HSMLSettings | None = None
    mumomaml: MUMOMAMLSettings | None = None
    plugin_settings: dict | None = None  # a registered plugin method's settings (asdict)
    # An ablation's name (table "ablations", docs/PROTOCOL.md §7): ``method`` is the method it
    # varies, the fields above say how. None for every paper row.
    variant: str | None = None
    eval_seed: int = EVAL_SEED
    eval_chunk: int = 1_000  # test tasks evaluated per batch (memory, not results)

    def __post_init__(self) -> None:
        check_meta_step(self.meta_step)

    @property
    def job_name(self) -> str:
        return f"{self.table}-{self.variant or self.method}-{self.setting}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def matches(self, stored: dict) -> bool:
        """Whether a stored config (checkpoint or result file) describes this run
        (``hsmlbench.configs.config_matches``)."""
        return config_matches(self.to_dict(), stored)


TABLES: dict[str, TableSpec] = {
    "T1": TableSpec(
        "T1",
        "Multimodal regression, query MSE after 10 steps ± 95% CI",
        ("maml", "mumomaml", "hsml"),
        ("5-shot", "10-shot"),
    ),
    "T2": TableSpec(
        "T2",
        "Continual regression (5-shot), query MSE after 10 steps ± 95% CI",
        ("hsml-s2", "hsml-s10", "hsml-d"),
        ("5-shot",),
    ),
}

# The ablations (docs/PROTOCOL.md §7): each row changes one thing of a paper method on T1's
# 5-shot tasks, relative to the defaults above. Their baseline rows are T1's own runs (same
# code, same test tasks), and "mumomaml-step1" is T1's MUMOMAML scored after one test step:
# neither trains anything here.
_CLIPPED = {"inner_grad_clamp": 10.0, "outer_grad_clip": 2.0}  # MUMOMAML's, given to others
ABLATIONS: dict[str, tuple[str, dict]] = {
    # unequal optimisation: MUMOMAML alone gets the clamp and the clip
    "mumomaml-noclip": (
        "mumomaml",
        {
            "mumomaml": MUMOMAMLSettings(inner_grad_clamp=None, outer_grad_clip=None),
            "outer_grad_clip": None,
        },
    ),
    "maml-clipped": ("maml", dict(_CLIPPED)),
    "hsml-clipped": ("hsml", {"hsml": HSMLSettings(), **_CLIPPED}),
    # the MUMOMAML authors' code clips the encoder and the model each on its own
    "mumomaml-separate-clip": (
        "mumomaml",
        {"mumomaml": MUMOMAMLSettings(), "outer_grad_clip": 2.0, "outer_clip_groups": "separate"},
    ),
    # modulation strength: bounded FiLM
    "mumomaml-gamma-only": (
        "mumomaml",
        {"mumomaml": MUMOMAMLSettings(modulation="gamma_only"), "outer_grad_clip": 2.0},
    ),
    "mumomaml-sigmoid-gate": (
        "mumomaml",
        {"mumomaml": MUMOMAMLSettings(modulation="sigmoid_gate"), "outer_grad_clip": 2.0},
    ),
    # initializations: this project's earlier ones (torch defaults, zero tree biases)
    "hsml-torch-init": ("hsml", {"hsml": HSMLSettings(init="torch")}),
    # level-2 assignment by distances to centres, as the paper's text describes it
    "hsml-centres": ("hsml", {"hsml": HSMLSettings(level2="centres")}),
    # the reference meta-step: does the fast path change what HSML learns?
    "hsml-autograd": ("hsml", {"hsml": HSMLSettings(), "meta_step": "autograd"}),
}
TABLES["ablations"] = TableSpec(
    "ablations",
    "Ablations on T1 (multimodal regression, 5-shot), query MSE after 10 steps ± 95% CI",
    tuple(ABLATIONS),
    ("5-shot",),
    notes=(
        "Each row changes one thing of a paper method (docs/PROTOCOL.md §7) and is compared "
        "with that method's T1 runs at the same budget, on the same test tasks.",
    ),
)

# Every table the command line knows: these regression tables and the image tables of
# hsmlbench.domains.images (named here so that error messages list them all).
ALL_TABLE_NAMES = (*TABLES, "T3", "T4")

# T2's models (docs/PROTOCOL.md §3 "Continual adaptation"): the stream uses the vertex-form
# quadratic.
_CONTINUAL_MODELS: dict[str, tuple[int, bool]] = {
    "hsml-s2": (2, False),  # first-level clusters, grows
    "hsml-s10": (10, False),
    "hsml-d": (2, True),
}


def _method_fields(method: str) -> dict:
    if method == "maml":
        return {}
    if method in _CONTINUAL_MODELS:
        k1, grow = _CONTINUAL_MODELS[method]
        return {
            "hsml": HSMLSettings(clusters=(k1, 2)),
            "continual": ContinualSettings(grow=grow),
            "quadratic_form": "vertex",
        }
    if method == "hsml":
        return {"hsml": HSMLSettings()}
    if method == "mumomaml":
        settings = MUMOMAMLSettings()
        return {"mumomaml": settings, "outer_grad_clip": settings.outer_grad_clip}
    raise KeyError(method)


def _extra_method_fields(table: str, method: str) -> dict:
    """A registered method that is not one of the table's own rows joins it under the table's
    task stream (T2: the continual stream and its vertex-form quadratic), with its settings."""
    spec = get_method(method)
    if TABLES[table].domain not in spec.domains:
        raise KeyError(
            f"method {method!r} runs on {', '.join(spec.domains)} tasks; table {table} is "
            f"{TABLES[table].domain}"
        )
    fields: dict = {"plugin_settings": spec.default_settings()}
    if table == "T2":
        fields |= {"continual": ContinualSettings(grow=False), "quadratic_form": "vertex"}
    return fields


def run_config(
    table: str, method: str, setting: str, budget: str, meta_step: str | None = None
) -> RunConfig:
    """The registry: the configuration of one table cell at a budget.

    ``method`` is one of the table's rows or any registered method of the table's domain
    (``hsmlbench.methods.registry``). ``meta_step`` None takes ``HSMLBENCH_META_STEP``, else the
    default ("fast")."""
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(ALL_TABLE_NAMES)}")
    spec = TABLES[table]
    if table == "ablations" and method in ABLATIONS:
        base, fields = ABLATIONS[method]
        fields = {"variant": method, **fields}
        method = base
    elif method in spec.methods:
        fields = _method_fields(method)
    else:
        fields = _extra_method_fields(table, method)
    if setting not in spec.settings:
        raise KeyError(
            f"table {table} has no setting {setting!r}; it has: {', '.join(spec.settings)}"
        )
    if budget not in BUDGETS:
        raise KeyError(f"unknown budget {budget!r}; known: {', '.join(BUDGETS)}")
    k_shot = int(setting.split("-")[0])
    # a method that cannot run the requested path runs its own (MethodSpec.meta_step_for)
    fields.setdefault(
        "meta_step", get_method(method).meta_step_for(meta_step or meta_step_from_env())
    )
    return RunConfig(
        table=table,
        method=method,
        setting=setting,
        budget=BUDGETS[budget],
        k_shot=k_shot,
        **fields,
    )
