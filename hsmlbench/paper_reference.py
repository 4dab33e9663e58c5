"""Published numbers and claims of the HSML paper: the only place they live.

Used for comparison columns only; every "ours" number comes from a run.
Source: ../shared/PAPER.md §2 (the poster's tables; CIs as restated by ARML).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    mean: float
    ci95: float | None  # None where the source gives no interval


# (table, method, setting) → published value.
PUBLISHED: dict[tuple[str, str, str], Published] = {
    # T1, multimodal regression, MSE ± 95% CI (PAPER.md §2 T1)
    ("T1", "maml", "5-shot"): Published(2.205, 0.121),
    ("T1", "maml", "10-shot"): Published(0.761, 0.068),
    ("T1", "mumomaml", "5-shot"): Published(1.096, 0.085),
    ("T1", "mumomaml", "10-shot"): Published(0.256, 0.028),
    ("T1", "hsml", "5-shot"): Published(0.856, 0.073),
    ("T1", "hsml", "10-shot"): Published(0.161, 0.021),
    # T2, continual regression, 5-shot MSE ± 95% CI (PAPER.md §2 T2)
    ("T2", "hsml-s2", "5-shot"): Published(0.933, 0.074),
    ("T2", "hsml-s10", "5-shot"): Published(0.889, 0.071),
    ("T2", "hsml-d", "5-shot"): Published(0.869, 0.072),
}


@dataclass(frozen=True)
class Claim:
    """The paper claims ``better`` beats ``worse`` (lower MSE / higher accuracy) at ``setting``."""

    table: str
    setting: str
    better: str
    worse: str

    @property
    def text(self) -> str:
        return f"{self.better} better than {self.worse} ({self.setting})"


# PAPER.md §2 "The claims behind the tables". Each pair is tested on the same test tasks.
CLAIMS: dict[str, tuple[Claim, ...]] = {
    "T1": tuple(
        Claim("T1", setting, better, worse)
        for setting in ("5-shot", "10-shot")
        for better, worse in (("hsml", "mumomaml"), ("hsml", "maml"), ("mumomaml", "maml"))
    ),
    "T2": (
        Claim("T2", "5-shot", "hsml-d", "hsml-s10"),
        Claim("T2", "5-shot", "hsml-s10", "hsml-s2"),
        Claim("T2", "5-shot", "hsml-d", "hsml-s2"),
    ),
}

METHOD_LABELS: dict[str, str] = {
    "maml": "MAML",
    "mumomaml": "MUMOMAML",
    "hsml": "HSML",
    "hsml-s2": "HSML-S (2C)",
    "hsml-s10": "HSML-S (10C)",
    "hsml-d": "HSML-D",
}
