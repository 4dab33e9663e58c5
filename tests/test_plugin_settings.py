"""A plug-in's settings from the command line (``--set``) and its own published values:
settings are part of a job's identity and appear in its table; declared values come with
their source and stay out of the paper's claims."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from hsmlbench.cli import main
from hsmlbench.methods import registry

PLUGIN = """
from dataclasses import dataclass

from hsmlbench.methods.maml import MAML
from hsmlbench.methods.registry import register_method


@dataclass(frozen=True)
class ScaledSettings:
    lr_scale: float = 1.0


@register_method(
    "scaled", settings=ScaledSettings, label="Scaled MAML",
    published={("T1", "5-shot"): (1.5, 0.1, "Doe et al. 2031, Table 2")},
)
def build(config):
    settings = ScaledSettings(**config.plugin_settings)
    return MAML(config.inner_lr * settings.lr_scale, config.second_order)
"""

ARGV = ["reproduce", "--tables", "T1", "--settings", "5-shot", "--budget", "smoke"]
ARGV += ["--jobs", "1", "--quiet", "--plugin", "scaled_plugin", "--methods", "maml", "scaled"]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "scaled_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(folder))
    for variable in ("HSMLBENCH_PLUGINS", "HSMLBENCH_PLUGIN_PATH"):
        monkeypatch.delenv(variable, raising=False)
    registry.registered_methods()  # everything installed, loaded before the copy below
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.delitem(sys.modules, "scaled_plugin", raising=False)  # registers anew


def test_set_changes_the_job_identity_and_names_the_row(tmp_path, plugin):
    out = tmp_path / "out"
    assert main([*ARGV, "--out", str(out)]) == 0
    assert main([*ARGV, "--out", str(out), "--set", "scaled.lr_scale=2"]) == 0
    runs = sorted(p.name for p in (out / "runs" / "T1").glob("T1-scaled*"))
    assert (
        len(runs) == 2
        and runs[0].startswith("T1-scaled+set")
        and runs[1] == "T1-scaled-5-shot-seed0-smoke.json"
    )
    changed = json.loads((out / "runs" / "T1" / runs[0]).read_text())
    assert changed["method"] == "scaled[lr_scale=2]"
    assert changed["config"]["plugin_settings"] == {"lr_scale": 2}
    default = json.loads((out / "runs" / "T1" / runs[1]).read_text())
    assert default["per_task"] != changed["per_task"]  # another run, not a reused one
    table = (out / "T1-extended.md").read_text()
    assert "| Scaled MAML [lr_scale=2] |" in table and "| Scaled MAML " in table


def test_a_plugins_published_value_is_shown_with_its_source_outside_the_claims(tmp_path, plugin):
    out = tmp_path / "out"
    assert main([*ARGV, "--out", str(out)]) == 0
    table = (out / "T1-extended.md").read_text()
    assert "Scaled MAML 5-shot: 1.5 ± 0.1, from Doe et al. 2031, Table 2" in table
    assert "1.500 ± 0.100 (secondary)" in table
    paper_claims, _, added = table.partition("## Added comparisons (not claims of the paper)")
    assert "scaled better than maml" in added and "scaled better than maml" not in paper_claims


@pytest.mark.parametrize(
    "option, message",
    [
        ("scaled.nope=1", "'scaled' has no setting 'nope'; its settings: lr_scale"),
        ("maml.inner_lr=1", "'maml' has no plug-in settings in T1"),
        ("scaled", "write METHOD.FIELD=VALUE"),
    ],
)
def test_a_bad_set_is_one_line(tmp_path, plugin, capsys, option, message):
    assert main([*ARGV, "--out", str(tmp_path / "out"), "--set", option]) == 2
    assert message in capsys.readouterr().err
