"""The method registry: the one place methods are known, open to code outside the package.

A method is a name, the domains (kinds of task) it runs on, an optional settings dataclass and a
factory ``factory(config) -> MetaLearner``. The built-ins register themselves in
``hsmlbench.methods.builtin``; another package adds methods with no edit to hsmlbench, either

- installed, through the entry-point group ``hsmlbench.methods`` (each entry point names a
  module or object whose import registers its methods), loaded when a name is first missing, or
- as a module on the path, with ``hsmlbench reproduce --plugin MODULE`` (``HSMLBENCH_PLUGINS``,
  comma-separated, carries the list to pool and Ray workers).

A method name has one factory per domain: registering the same name again for another domain
(``register_method("maml", domains=("images",))``) adds that domain's factory to the same
method, with its own settings; its label and built-in flag must be the same. The same name
registered twice for one domain is an error: a table row must mean one method.
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

from hsmlbench.methods.meta_step import META_STEPS

ENTRY_POINT_GROUP = "hsmlbench.methods"
PLUGINS_ENV_VAR = "HSMLBENCH_PLUGINS"  # modules given with --plugin, for pool/Ray workers
PLUGIN_PATH_ENV_VAR = "HSMLBENCH_PLUGIN_PATH"  # where they were found (workers' sys.path)
DOMAINS = ("regression", "images")


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid (one line says why)."""


class BrokenMethodError(KeyError):
    """A method name that an installed plug-in claims but cannot provide (it failed to load,
    or two plug-ins claim the name). Only that method's cells fail; the others run."""

    def __str__(self) -> str:
        return str(self.args[0])


def package_of(module: str) -> str:
    """The installed distribution that provides ``module`` (what to reinstall or uninstall)."""
    from importlib.metadata import packages_distributions

    top = module.split(".")[0]
    found = packages_distributions().get(top)
    return found[0] if found else top


@dataclass(frozen=True)
class MethodSpec:
    """One registered method: a factory (and settings) per domain it runs on."""

    name: str
    factories: dict[str, Callable]  # domain → factory(config) -> MetaLearner
    settings_by_domain: dict[str, type | None]  # domain → frozen dataclass (or None)
    label: str | None = None  # how tables name it (default: the name)
    builtin: bool = False  # one of the paper's methods (its claims and published values)
    # A plug-in's own published values: (table, setting) → (mean, ci95, source). Shown beside
    # its rows with the source in the table's notes; never part of the paper's claims.
    published: dict | None = None
    # The regression meta-step paths its model can run, preferred first: a method with its own
    # base learner, inner objective or inner update and no explicit gradients for them runs on
    # ("autograd",) only (hsmlbench.methods.meta_step; docs/ADDING_A_METHOD.md §2).
    meta_steps: tuple[str, ...] = META_STEPS

    def meta_step_for(self, requested: str) -> str:
        """The path its jobs take when ``requested`` is asked for: that one where it can run
        it, else its own first (the row's meta-step then says which it ran)."""
        return requested if requested in self.meta_steps else self.meta_steps[0]

    @property
    def domains(self) -> tuple[str, ...]:
        """The domains it runs on, in ``DOMAINS`` order."""
        return tuple(d for d in DOMAINS if d in self.factories)

    @property
    def default_domain(self) -> str:
        """Its first domain in ``DOMAINS`` order (regression, where it runs on regression)."""
        return self.domains[0]

    def _check_domain(self, domain: str) -> None:
        if domain not in self.factories:
            raise KeyError(
                f"method {self.name!r} does not run on {domain!r} tasks; "
                f"it supports: {', '.join(self.domains)}"
            )

    def factory_for(self, domain: str) -> Callable:
        """The factory(config) -> MetaLearner of ``domain``; a one-line KeyError naming the
        domains the method supports where it has none."""
        self._check_domain(domain)
        return self.factories[domain]

    def settings_for(self, domain: str) -> type | None:
        """The settings dataclass of ``domain`` (None: the method has none there)."""
        self._check_domain(domain)
        return self.settings_by_domain[domain]

    @property
    def factory(self) -> Callable:
        """The factory of ``default_domain``: regression's, for regression callers."""
        return self.factories[self.default_domain]

    @property
    def settings(self) -> type | None:
        """The settings of ``default_domain``; its defaults become config.plugin_settings."""
        return self.settings_by_domain[self.default_domain]

    @property
    def module(self) -> str:
        return self.factory.__module__

    @property
    def modules(self) -> tuple[str, ...]:
        """The modules of all its factories (one, unless a domain's factory lives elsewhere)."""
        return tuple(dict.fromkeys(self.factories[d].__module__ for d in self.domains))

    def build(self, domain: str, config):
        """A fresh model of ``config`` from ``domain``'s factory. A plug-in's factory that
        raises fails with one line naming its package (so only that method's cells fail)."""
        factory = self.factory_for(domain)
        if self.builtin:
            return factory(config)
        try:
            return factory(config)
        except Exception as error:  # noqa: BLE001 - the plug-in's failure, named in one line
            package = package_of(factory.__module__)
            raise PluginError(
                f"method {self.name!r} (plug-in package {package}) failed to build its model: "
                f"{type(error).__name__}: {error}; fix the plug-in or `pip uninstall {package}`"
            ) from error

    def default_settings(self, domain: str | None = None) -> dict | None:
        """The defaults of ``domain``'s settings as a dict (None: ``default_domain``)."""
        settings = self.settings if domain is None else self.settings_for(domain)
        if settings is None:
            return None
        return dataclasses.asdict(settings())


_REGISTRY: dict[str, MethodSpec] = {}
_BROKEN: dict[str, str] = {}  # method name → why no plug-in can provide it (two claim it)
_FAILED_PLUGINS: list[str] = []  # installed plug-ins that failed to load, one line each
_entry_points_loaded = False


def register_method(
    name: str,
    *,
    domains: tuple[str, ...] = ("regression",),
    settings: type | None = None,
    label: str | None = None,
    builtin: bool = False,
    published: dict | None = None,
    meta_steps: tuple[str, ...] = META_STEPS,
) -> Callable[[Callable], Callable]:
    """Decorator: registers ``factory(config) -> MetaLearner`` under ``name`` for ``domains``.

    ``meta_steps``: the regression meta-step paths the method's model supports, preferred
    first; ("autograd",) for a model that overrides ``predict``, ``support_loss`` or
    ``inner_update`` without explicit support gradients (``MetaLearner.supports_fast_meta_step``).

    A name already registered for other domains gains these (its label and ``builtin`` must
    be the same); a (name, domain) already registered with another factory is an error."""
    unknown = set(domains) - set(DOMAINS)
    if unknown or not domains:
        raise PluginError(
            f"method {name!r}: unknown domain(s) {sorted(unknown) or '(none given)'}; "
            f"known: {', '.join(DOMAINS)}"
        )
    meta_steps = tuple(meta_steps)
    if not meta_steps or set(meta_steps) - set(META_STEPS):
        raise PluginError(
            f"method {name!r}: meta_steps={meta_steps!r}; give one or more of "
            f"{', '.join(META_STEPS)}"
        )
    if settings is not None and not dataclasses.is_dataclass(settings):
        raise PluginError(f"method {name!r}: settings must be a dataclass, got {settings!r}")
    for key, value in (published or {}).items():
        if not (isinstance(key, tuple) and len(key) == 2 and len(value) == 3):
            raise PluginError(
                f"method {name!r}: published must map (table, setting) to (mean, ci95, "
                f"source), got {key!r}: {value!r}"
            )

    def decorate(factory: Callable) -> Callable:
        existing = _REGISTRY.get(name)
        if name in _BROKEN:
            return factory  # already claimed by two plug-ins: neither is used
        if existing is not None and existing.builtin and not builtin:
            raise PluginError(
                f"{factory.__module__} registers {name!r}, the name of one of the paper's "
                "methods: refused (the built-in stays); rename the plug-in's method"
            )
        if (
            existing is not None
            and not builtin
            and not existing.builtin
            and any(existing.factories.get(d) not in (None, factory) for d in domains)
        ):
            _BROKEN[name] = (
                f"method {name!r} is claimed by two plug-ins ({package_of(existing.module)} "
                f"and {package_of(factory.__module__)}): a table row must mean one method, so "
                "neither is used; uninstall one of them"
            )
            del _REGISTRY[name]
            return factory
        if existing is None:
            factories = dict.fromkeys(domains, factory)
            all_settings = dict.fromkeys(domains, settings)
            _REGISTRY[name] = MethodSpec(
                name,
                factories,
                all_settings,
                label,
                builtin,
                dict(published or {}) or None,
                meta_steps if "regression" in domains else META_STEPS,
            )
            return factory
        for domain in domains:
            other = existing.factories.get(domain)
            if other is not None and other is not factory:
                raise PluginError(
                    f"method {name!r} is registered twice for {domain} (by {other.__module__} "
                    f"and {factory.__module__}); rename one: a table row must mean one method"
                )
            if other is not None and existing.settings_by_domain[domain] is not settings:
                raise PluginError(
                    f"method {name!r} is registered twice for {domain} with different settings "
                    f"({existing.settings_by_domain[domain]!r} and {settings!r})"
                )
        if (label, builtin) != (existing.label, existing.builtin):
            raise PluginError(
                f"method {name!r} for {', '.join(domains)} ({factory.__module__}) has label "
                f"{label!r}, builtin={builtin}, but for {', '.join(existing.domains)} "
                f"({existing.module}) label {existing.label!r}, builtin={existing.builtin}: "
                "one name must mean one method"
            )
        _REGISTRY[name] = dataclasses.replace(
            existing,
            factories=existing.factories | dict.fromkeys(domains, factory),
            settings_by_domain=existing.settings_by_domain | dict.fromkeys(domains, settings),
            published={**(existing.published or {}), **(published or {})} or None,
            meta_steps=meta_steps if "regression" in domains else existing.meta_steps,
        )
        return factory

    return decorate


_builtins_loaded = False


def _load_builtins() -> None:
    """Registers the paper's methods the way plug-ins register theirs: through hsmlbench's own
    ``hsmlbench.methods`` entry points (pyproject.toml), so no module of the registry imports
    a method and the built-ins follow exactly the contract a plug-in author reads."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    own = [p for p in entry_points(group=ENTRY_POINT_GROUP) if p.value.startswith("hsmlbench.")]
    if not own:
        raise PluginError(
            "hsmlbench's own methods are declared as entry points in its installed metadata, "
            "and none were found: install hsmlbench (`pip install -e .` in its folder)"
        )
    _builtins_loaded = True
    for point in own:
        point.load()


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
        if point.value.startswith("hsmlbench."):
            continue  # the built-ins: _load_builtins, where a failure is hsmlbench's own
        try:
            point.load()
        except Exception as error:  # noqa: BLE001 - one broken plug-in breaks only itself
            package = point.dist.name if getattr(point, "dist", None) else point.value
            _FAILED_PLUGINS.append(
                f"installed plug-in {point.name!r} (package {package}, {point.value}) failed "
                f"to load: {type(error).__name__}: {error}; reinstall it or `pip uninstall "
                f"{package}`"
            )


def get_method(name: str, domain: str | None = None) -> MethodSpec:
    """The method registered as ``name``; installed plugins are loaded on the first miss (of
    the name, or with ``domain``, of the name's factory for that domain)."""
    _load_builtins()
    _load_env_plugins()
    if name not in _REGISTRY or (domain is not None and domain not in _REGISTRY[name].factories):
        _load_entry_points()
    if name in _BROKEN:
        raise BrokenMethodError(_BROKEN[name])
    if name not in _REGISTRY:
        if _FAILED_PLUGINS:  # the name may be one of theirs: say so, fail only its cells
            raise BrokenMethodError(f"unknown method {name!r}; {'; '.join(_FAILED_PLUGINS)}")
        raise KeyError(
            f"unknown method {name!r}; registered: {', '.join(sorted(_REGISTRY))} "
            f"(add one with --plugin MODULE or an installed '{ENTRY_POINT_GROUP}' entry point)"
        )
    return _REGISTRY[name]


def failed_plugins() -> list[str]:
    """One line per installed plug-in that failed to load (after loading them)."""
    _load_entry_points()
    return list(_FAILED_PLUGINS)


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
    digest = hashlib.sha256()  # every module with one of its factories (usually one)
    for module in spec.modules:
        path = inspect.getsourcefile(sys.modules[module])
        if not path:
            return "unknown"
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]
