"""Table T1 (multimodal regression, docs/PROTOCOL.md §2 T1): every cell, then the table and its
tests."""

import pytest

from hsmlbench.domains.regression.configs import TABLES

CELLS = [(m, s) for m in TABLES["T1"].methods for s in TABLES["T1"].settings]


@pytest.mark.cell("T1")
@pytest.mark.parametrize("method, setting", CELLS, ids=[f"{m}-{s}" for m, s in CELLS])
def test_T1_cell(run_cell, method, setting):
    run_cell("T1", method, setting)


@pytest.mark.table("T1")
def test_T1_table_and_comparisons(render_table, budget):
    text = render_table("T1")
    assert budget in text
    for claim in (
        "hsml better than mumomaml",
        "hsml better than maml",
        "mumomaml better than maml",
    ):
        assert claim in text
