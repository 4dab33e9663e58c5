"""The method registry: the one place methods are known, open to code outside the package.

A method is a name, the domains (kinds of task) it runs on, an optional settings dataclass and a
factory ``factory(config) -> MetaLearner``. The built-ins register themselves in
``hsmlbench.methods.builtin``; another package adds methods with no edit to hsmlbench, either

- installed, through the entry-point group ``hsmlbench.methods`` (each entry point names a
  module or object whose import registers its methods), loaded when a name is first missing, or
- as a module on the path, with ``hsmlbench reproduce --plugin MODULE`` (``HSMLBENCH_PLUGINS``,
  comma-separated, carries the list to pool and Ray workers).

A name registered twice is an error: a table row must mean one method.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "hsmlbench.methods"
PLUGINS_ENV_VAR = "HSMLBENCH_PLUGINS"  # modules given with --plugin, for pool/Ray workers
PLUGIN_PATH_ENV_VAR = "HSMLBENCH_PLUGIN_PATH"  # where they were found (workers' sys.path)
DOMAINS = ("regression", "images")


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid (one line says why)."""


@dataclass(frozen=True)
class MethodSpec:
    """One registered method."""

    name: str
    factory: Callable  # factory(config: RunConfig) -> MetaLearner
    domains: tuple[str, ...] = ("regression",)
    settings: type | None = None  # a frozen dataclass; its defaults become config.plugin_settings
    label: str | None = None  # how tables name it (default: the name)
    builtin: bool = False  # one of the paper's methods (its claims and published values)

    @property
    def module(self) -> str:
        return self.factory.__module__

    def default_settings(self) -> dict | None:
        if self.settings is None:
            return None
        return dataclasses.asdict(self.settings())


_REGISTRY: dict[str, MethodSpec] = {}
_entry_points_loaded = False


def register_method(
    name: str,
    *,
    domains: tuple[str, ...] = ("regression",),
    settings: type | None = None,
    label: str | None = None,
    builtin: bool = False,
) -> Callable[[Callable], Callable]:
    """Decorator: registers ``factory(config) -> MetaLearner`` under ``name``."""
    unknown = set(domains) - set(DOMAINS)
    if unknown or not domains:
        raise PluginError(
            f"method {name!r}: unknown domain(s) {sorted(unknown) or '(none given)'}; "
            f"known: {', '.join(DOMAINS)}"
        )
    if settings is not None and not dataclasses.is_dataclass(settings):
        raise PluginError(f"method {name!r}: settings must be a dataclass, got {settings!r}")

    def decorate(factory: Callable) -> Callable:
        spec = MethodSpec(name, factory, tuple(domains), settings, label, builtin)
        existing = _REGISTRY.get(name)
        if existing is not None and existing.factory is not factory:
            raise PluginError(
                f"method {name!r} is registered twice (by {existing.module} and {spec.module}); "
                "rename one: a table row must mean one method"
            )
        _REGISTRY[name] = spec
        return factory

    return decorate


def _load_builtins() -> None:
    import hsmlbench.methods.builtin  # noqa: F401 - registers the paper's methods


def load_plugin(module: str) -> None:
    """Imports a plugin module (registering its methods); any failure is one PluginError line."""
    try:
        loaded = importlib.import_module(module)
    except PluginError:
        raise
    except Exception as error:  # noqa: BLE001 - a plugin's failure, named in one line
        raise PluginError(
            f"plugin {module!r} failed to load: {type(error).__name__}: {error}"
        ) from None
    _remember(PLUGINS_ENV_VAR, module, ",")  # pool and Ray workers load it too
    if getattr(loaded, "__file__", None):  # from the same folder (a worker's path may differ)
        path = Path(loaded.__file__).resolve()
        root = path.parents[module.count(".") + (path.name == "__init__.py")]
        _remember(PLUGIN_PATH_ENV_VAR, str(root), os.pathsep)


def _remember(variable: str, value: str, separator: str) -> None:
    values = [v for v in os.environ.get(variable, "").split(separator) if v]
    if value not in values:
        os.environ[variable] = separator.join([*values, value])


def _load_env_plugins() -> None:
    for folder in filter(None, os.environ.get(PLUGIN_PATH_ENV_VAR, "").split(os.pathsep)):
        if folder not in sys.path:
            sys.path.append(folder)
    for module in filter(None, os.environ.get(PLUGINS_ENV_VAR, "").split(",")):
        if module not in sys.modules:
            load_plugin(module)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except PluginError:
            raise
        except Exception as error:  # noqa: BLE001
            raise PluginError(
                f"installed plugin {point.name!r} ({point.value}) failed to load: "
                f"{type(error).__name__}: {error}"
            ) from None


def get_method(name: str) -> MethodSpec:
    """The method registered as ``name``; installed plugins are loaded on the first miss."""
    _load_builtins()
    _load_env_plugins()
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise KeyError(
            f"unknown method {name!r}; registered: {', '.join(sorted(_REGISTRY))} "
            f"(add one with --plugin MODULE or an installed '{ENTRY_POINT_GROUP}' entry point)"
        )
    return _REGISTRY[name]


def registered_methods(domain: str | None = None) -> dict[str, MethodSpec]:
    """Every method known now (built-ins, loaded plugins, installed entry points)."""
    _load_builtins()
    _load_env_plugins()
    _load_entry_points()
    return {n: s for n, s in _REGISTRY.items() if domain is None or domain in s.domains}


def plugin_source_hash(name: str) -> str | None:
    """A hash of a plugin method's module source (None for built-ins): part of its jobs' code
    version, so that a changed plugin is never reused."""
    spec = get_method(name)
    if spec.builtin:
        return None
    path = inspect.getsourcefile(sys.modules[spec.module])
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12] if path else "unknown"
