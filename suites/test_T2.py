"""Table T2 (continual regression, docs/PROTOCOL.md §2 T2, §3): HSML-S(2C), HSML-S(10C), HSML-D."""

import pytest

from hsmlbench.domains.regression.configs import TABLES


@pytest.mark.cell("T2")
@pytest.mark.parametrize("method", TABLES["T2"].methods)
def test_T2_cell(run_cell, method):
    raw = run_cell("T2", method, "5-shot")
    assert raw["window_query_loss"], "the window-loss trace feeds the growth figure"
    if method != "hsml-d":
        assert raw["events"] == [], "HSML-S must never add a cluster"


@pytest.mark.table("T2")
def test_T2_table_and_comparisons(render_table, budget):
    text = render_table("T2")
    assert budget in text
    assert "hsml-d better than hsml-s10" in text and "hsml-s10 better than hsml-s2" in text
