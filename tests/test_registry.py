"""Methods from outside the package: the registry, --plugin, installed entry points, and
the extended table where an added method is tested against the paper's methods."""

import json
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, distribution

import pytest

from hsmlbench.cli import main
from hsmlbench.methods.registry import get_method, register_method

TOY = """
from hsmlbench.methods.maml import MAML
from hsmlbench.methods.registry import register_method


@register_method("toy-{tag}", label="Toy {tag}")
def build(config):
    return MAML(config.inner_lr, config.second_order)
"""


def _plugin(tmp_path, monkeypatch, name, source):
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    for variable in ("HSMLBENCH_PLUGINS", "HSMLBENCH_PLUGIN_PATH"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_plugin_method_joins_t1_in_an_extended_table_with_its_own_holm_family(
    tmp_path, monkeypatch, capsys, workers
):
    tag = f"w{workers}"
    _plugin(tmp_path, monkeypatch, f"toy_plugin_{tag}", TOY.format(tag=tag))
    out = tmp_path / "out"
    argv = ["reproduce", "--tables", "T1", "--settings", "5-shot", "--budget", "smoke"]
    argv += ["--methods", "maml", "hsml", f"toy-{tag}", "--plugin", f"toy_plugin_{tag}"]
    argv += ["--out", str(out), "--work-dir", str(tmp_path / "w"), "--jobs", workers, "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    paper = json.loads((out / "T1.json").read_text())
    extended = json.loads((out / "T1-extended.json").read_text())
    assert {r["method"] for r in paper["rows"]} == {"maml", "hsml"}
    assert {r["method"] for r in extended["rows"]} == {"maml", "hsml", f"toy-{tag}"}
    claims = {c["claim"]: c for c in extended["summary"]["comparisons"]}
    for baseline in ("maml", "mumomaml", "hsml"):
        text = f"toy-{tag} better than {baseline} (5-shot)"
        if baseline == "mumomaml":  # not run: no row to test against
            assert text not in claims
        else:
            assert claims[text]["family"] == f"toy-{tag}"
    # the paper's claims keep exactly the paper table's adjusted p-values
    for c in paper["summary"]["comparisons"]:
        same = claims[c["claim"]]
        assert (same["wilcoxon_p_holm"], same["t_p_holm"]) == (c["wilcoxon_p_holm"], c["t_p_holm"])
    markdown = (out / "T1-extended.md").read_text()
    assert f"| Toy {tag}" in markdown and f"toy-{tag} better than hsml (5-shot)" in markdown
    assert "Toy" not in (out / "T1.md").read_text()


@pytest.mark.parametrize(
    "source, message",
    [
        (None, "plugin 'no_such_plugin_module' failed to load: ModuleNotFoundError"),
        (
            "from hsmlbench.methods.registry import register_method\n"
            "register_method('odd', domains=('speech',))(lambda config: None)\n",
            "method 'odd': unknown domain(s) ['speech']; known: regression, images",
        ),
        (
            "from hsmlbench.methods.registry import register_method\n"
            "register_method('maml')(lambda config: None)\n",
            "registers 'maml', the name of one of the paper's methods: refused (the built-in stays)",
        ),
        ("raise RuntimeError('broken at import')\n", "RuntimeError: broken at import"),
    ],
    ids=["missing", "unknown-domain", "name-clash", "raises"],
)
def test_broken_plugin_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, source, message):
    name = "no_such_plugin_module"
    if source is not None:
        name = f"broken_{abs(hash(message)) % 10**8}"
        _plugin(tmp_path, monkeypatch, name, source)
    argv = ["reproduce", "--tables", "T1", "--budget", "smoke", "--plugin", name]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_unknown_method_lists_what_is_registered_and_how_to_add_one():
    with pytest.raises(KeyError, match="unknown method 'reptile'; registered: .*hsml.*--plugin"):
        get_method("reptile")


def test_a_name_registered_twice_by_different_code_fails_that_name_only():
    """Two plug-ins claiming one name: neither is used, and only that name fails (one line
    naming both packages); the other methods are untouched (tests/test_plugin_isolation.py)."""
    from hsmlbench.methods.registry import BrokenMethodError

    register_method("twice-test")(lambda config: "first")
    register_method("twice-test")(lambda config: "second")
    with pytest.raises(BrokenMethodError, match="'twice-test' is claimed by two plug-ins"):
        get_method("twice-test")
    assert get_method("maml").builtin


def test_installed_plugin_is_found_through_its_entry_point():
    """The example plugin, installed (tox installs it), is found with no --plugin flag."""
    try:
        distribution("hsmlbench-metasgd")
    except PackageNotFoundError:
        pytest.skip("examples/metasgd is not installed (pip install -e examples/metasgd)")
    code = (
        "import sys; from hsmlbench.methods.registry import get_method; "
        "spec = get_method('metasgd'); "
        "assert 'hsmlbench_metasgd' not in sys.argv; print(spec.label, spec.module)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Meta-SGD", "hsmlbench_metasgd"]
