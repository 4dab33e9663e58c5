"""A broken plug-in breaks only itself: a raising factory, an installed plug-in whose module
is missing, and a name claimed twice each fail that method's cells only, named with the
package to fix, while the paper's methods run and are tabled."""

from __future__ import annotations

import textwrap
from types import SimpleNamespace

import pytest

from hsmlbench.cli import main
from hsmlbench.methods import registry

T1_MAML = ["reproduce", "--tables", "T1", "--settings", "5-shot", "--budget", "smoke"]
T1_MAML += ["--jobs", "1", "--quiet"]


@pytest.fixture
def clean_registry(monkeypatch):
    """The registry as it is with every installed plug-in loaded, restored afterwards."""
    registry.registered_methods()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_BROKEN", {})
    monkeypatch.setattr(registry, "_FAILED_PLUGINS", [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    for variable in ("HSMLBENCH_PLUGINS", "HSMLBENCH_PLUGIN_PATH"):
        monkeypatch.delenv(variable, raising=False)


def _installed(monkeypatch, *points):
    """Fake installed entry points (besides hsmlbench's own), each ``(name, load)``."""
    real = registry.entry_points

    def entry_points(group):
        fakes = [
            SimpleNamespace(
                name=n,
                value=f"{n}_module:register",
                dist=SimpleNamespace(name=f"hsmlbench-{n}"),
                load=load,
            )
            for n, load in points
        ]
        return [*real(group=group), *fakes]

    monkeypatch.setattr(registry, "entry_points", entry_points)


def _run(tmp_path, capsys, *methods, extra=()):
    out = tmp_path / "out"
    code = main([*T1_MAML, "--methods", *methods, "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, (out / "T1.md").read_text() if (out / "T1.md").exists() else "", captured


def test_a_missing_plugin_module_blocks_nothing_and_fails_only_its_own_cells(
    tmp_path, capsys, monkeypatch, clean_registry
):
    def load():
        raise ModuleNotFoundError("No module named 'ghost_module'")

    _installed(monkeypatch, ("ghost", load))
    code, table, captured = _run(tmp_path, capsys, "maml", "ghost")
    assert code == 3  # a job failed
    assert "| MAML" in table  # the paper's method ran and is tabled
    assert "FAILED T1-ghost-5-shot-seed0" in captured.out
    assert (
        "package hsmlbench-ghost" in captured.out
        and "pip uninstall hsmlbench-ghost" in captured.out
    )
    # a table that never asks for it is not touched at all
    assert main([*T1_MAML, "--methods", "maml", "--out", str(tmp_path / "o2")]) == 0


def test_a_raising_factory_fails_only_its_method(tmp_path, capsys, monkeypatch, clean_registry):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "boomplugin.py").write_text(
        textwrap.dedent(
            """
            from hsmlbench.methods.registry import register_method

            @register_method("boom", label="Boom")
            def build(config):
                raise RuntimeError("out of ideas")
            """
        )
    )
    monkeypatch.syspath_prepend(str(folder))
    code, table, captured = _run(tmp_path, capsys, "maml", "boom", extra=["--plugin", "boomplugin"])
    assert code == 3 and "| MAML" in table
    assert "method 'boom' (plug-in package boomplugin) failed to build its model" in captured.out
    assert "RuntimeError: out of ideas" in captured.out


def test_a_plugin_cannot_take_a_builtin_name_and_two_cannot_share_one(
    tmp_path, capsys, monkeypatch, clean_registry
):
    def claims_maml():
        registry.register_method("maml", label="Not MAML")(lambda config: None)

    def first():
        registry.register_method("dup", label="Dup A")(lambda config: None)

    def second():
        registry.register_method("dup", label="Dup B")(lambda config: None)

    _installed(monkeypatch, ("impostor", claims_maml), ("dup-a", first), ("dup-b", second))
    code, table, captured = _run(tmp_path, capsys, "maml", "dup")
    assert code == 3 and "| MAML" in table, captured.err
    assert registry.get_method("maml").builtin  # the built-in stayed
    assert any(
        "'maml', the name of one of the paper's methods: refused" in line
        for line in registry.failed_plugins()
    )
    assert "method 'dup' is claimed by two plug-ins" in captured.out
