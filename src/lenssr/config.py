"""One reader for every YAML configuration: simulation presets, training and tuning configs.

- :func:`load_yaml` reads a YAML mapping (OmegaConf's loader, so ``1e-4`` is a number) and the
  files its ``defaults:`` key names (one file or a list, merged in order; the including file's
  values win). Where an include points is the caller's choice (training configs: a path
  relative to the including file; presets: a shipped preset name or a file).
- :func:`parse_overrides` and :func:`apply_overrides` read ``section.key=value`` dotlists
  (OmegaConf's dotlist parser: values are YAML, ``optim.lr=1e-4``, ``lens.q=[0.7, 0.9]``,
  ``init=null``).
- :func:`merge` deep-merges two configs; ``strict=True`` rejects keys the base does not have.
- :func:`number` is the one check and coercion of a numeric setting.

Every problem is a one-line :class:`~lenssr.errors.ConfigError` naming the file (or
``overrides``) and the key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lenssr.errors import ConfigError

__all__ = [
    "apply_overrides",
    "load_yaml",
    "merge",
    "nest",
    "number",
    "parse_overrides",
    "read_yaml_file",
]

#: A mapping that is one value, not a section (e.g. a preset's ``{loguniform: [lo, hi]}``).
Leaf = Callable[[Any], bool]
#: Where a ``defaults:`` entry points: a file to load (with its own includes) or a loaded config.
Include = Callable[[str, Path], "Path | dict[str, Any]"]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """One YAML file as a plain ``dict`` (an empty file is ``{}``); no includes."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = OmegaConf.load(path)
        data = OmegaConf.to_container(loaded, resolve=False)
    except Exception as exc:  # yaml.YAMLError, omegaconf errors: both one line
        raise ConfigError(f"{path}: invalid YAML ({_one_line(exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return data


def _is_leaf(value: Any, leaf: Leaf | None) -> bool:
    return not isinstance(value, dict) or (leaf is not None and leaf(value))


def nest(config: dict[str, Any], leaf: Leaf | None = None) -> dict[str, Any]:
    """Dotted keys at any level as nested sections: ``{"lr.psf_fwhm": 0.2}`` ->
    ``{"lr": {"psf_fwhm": 0.2}}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if not _is_leaf(value, leaf):
            value = nest(value, leaf)
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"config key {key!r} is set both as a value and as a section")
            node = child
        old = node.get(parts[-1])
        if isinstance(old, dict) and not _is_leaf(value, leaf):
            node[parts[-1]] = merge(old, value, leaf=leaf)
        else:
            node[parts[-1]] = value
    return out


def merge(
    base: dict[str, Any],
    over: dict[str, Any],
    *,
    strict: bool = False,
    origin: str = "",
    leaf: Leaf | None = None,
    open_sections: Iterable[str] = (),
    _prefix: str = "",
) -> dict[str, Any]:
    """Deep merge: sections merge key by key, any other value of ``over`` replaces ``base``'s.

    Args:
        base, over: nested configs (neither is changed; the result shares nothing with them).
        strict: every key of ``over`` must exist in ``base``.
        origin: where ``over`` comes from (a file, ``overrides``), for error messages.
        leaf: tells which mappings are single values (replaced whole, never merged).
        open_sections: dotted sections whose keys are not checked (e.g. ``model``, whose keys
            are an architecture's constructor arguments).

    Raises:
        ConfigError: (``strict``) an unknown key, or a value where ``base`` has a section.
    """
    where = f" in {origin}" if origin else ""
    opened = set(open_sections)
    out = copy.deepcopy(base)
    for key, value in over.items():
        name = f"{_prefix}{key}"
        check = strict and _prefix.rstrip(".") not in opened
        if check and key not in out:
            known = ", ".join(sorted(map(str, out)))
            raise ConfigError(f"unknown config key {name!r}{where} (known here: {known})")
        old = out.get(key)
        if not _is_leaf(old, leaf):
            if _is_leaf(value, leaf):
                if check:
                    raise ConfigError(f"config key {name!r}{where} is a section; set its keys")
                out[key] = copy.deepcopy(value)
            else:
                out[key] = merge(
                    old,
                    value,
                    strict=strict,
                    origin=origin,
                    leaf=leaf,
                    open_sections=opened,
                    _prefix=f"{name}.",
                )
        else:
            out[key] = copy.deepcopy(value)
    return out


def _relative(ref: str, including: Path) -> Path:
    return including.parent / ref


def load_yaml(
    path: str | Path,
    *,
    include: Include = _relative,
    root: dict[str, Any] | None = None,
    strict: bool = False,
    leaf: Leaf | None = None,
    _seen: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """A YAML config with the files its ``defaults:`` key names merged under it.

    Args:
        path: the YAML file.
        include: where a ``defaults:`` entry points (default: a path relative to the including
            file); it returns a file (loaded the same way, includes and all) or a loaded config.
        root: what a file without ``defaults:`` starts from (default: nothing).
        strict: a file may only set keys its base (``root`` or its includes) has.
        leaf: mappings that are single values (see :func:`merge`).

    Raises:
        ConfigError: missing file, bad YAML, an include cycle, unknown keys (``strict``).
    """
    path = Path(path)
    own = nest(read_yaml_file(path), leaf)
    refs = own.pop("defaults", None)
    if refs is None:
        return merge(root or {}, own, strict=strict, origin=str(path), leaf=leaf)
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ConfigError(f"{path}: defaults must be a file (or preset) name or a list of them")
    seen = (*_seen, path.resolve())
    base: dict[str, Any] = {}
    for ref in refs:
        found = include(ref, path)
        if isinstance(found, Path):
            if found.resolve() == path.resolve():
                raise ConfigError(f"{path}: defaults names the file itself")
            if found.resolve() in seen:
                raise ConfigError(f"{path}: defaults {ref!r} includes this file again (a cycle)")
            found = load_yaml(
                found, include=include, root=root, strict=strict, leaf=leaf, _seen=seen
            )
        base = merge(base, found, leaf=leaf)
    return merge(base, own, strict=strict, origin=str(path), leaf=leaf)


def _parse_one(item: str) -> tuple[str, Any]:
    """``"key.sub=value"`` -> ``("key.sub", value)``, the value read as YAML by OmegaConf."""
    from omegaconf import OmegaConf

    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-4)")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key or not all(key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        parsed = OmegaConf.to_container(
            OmegaConf.from_dotlist([f"{key}={value.strip()}"]), resolve=False
        )
    except Exception as exc:  # yaml or omegaconf: one line
        problem = _one_line(exc)
        raise ConfigError(f"override {item!r}: cannot read the value ({problem})") from None
    for part in key.split("."):
        parsed = parsed[part]
    return key, parsed


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """Parse ``key.sub=value`` strings into a nested dict (values read as YAML).

    >>> parse_overrides(["lr.psf_fwhm=0.2", "subhalos.n=500"])
    {'lr': {'psf_fwhm': 0.2}, 'subhalos': {'n': 500}}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        out = merge(out, nest(dict([_parse_one(item)])))
    return out


def apply_overrides(
    config: dict[str, Any],
    overrides: Iterable[str] | None,
    *,
    strict: bool = False,
    leaf: Leaf | None = None,
) -> dict[str, Any]:
    """A copy of ``config`` with ``key=value`` overrides set, in order (see
    :func:`parse_overrides`). A mapping value replaces the whole section
    (``model={name: srcnn, num_feat: 8}`` drops the other model keys); any other value replaces
    one key."""
    out = copy.deepcopy(config)
    for item in overrides or []:
        key, value = _parse_one(item)
        if not isinstance(value, dict):
            out = merge(out, nest({key: value}), strict=strict, origin="overrides", leaf=leaf)
            continue
        *parents, last = key.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                if strict or child is not None:
                    raise ConfigError(f"override {item!r}: {part!r} is not a config section")
                child = node[part] = {}
            node = child
        if strict and last not in node:
            raise ConfigError(f"override {item!r}: unknown config key {key!r}")
        node[last] = copy.deepcopy(value)
    return out


def number(
    value: Any,
    name: str,
    *,
    integer: bool = False,
    positive: bool = False,
    minimum: float | None = None,
) -> int | float:
    """The numeric setting ``name``: ``value`` as an int or float, numeric strings read.

    Raises:
        ConfigError: not a number (booleans are not), not an integer when ``integer``, not
            > 0 when ``positive``, or below ``minimum``.
    """
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if integer:
        if int(value) != value:
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        value = int(value)
    if positive and value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum:g}, got {value!r}")
    return value
