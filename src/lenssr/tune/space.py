"""Search spaces for ``lenssr tune``: parameters, derived values and constraints from YAML.

A space is three mappings of a tune YAML (see ``configs/tune-*.yaml`` and ``docs/tuning.md``)::

    space:
      model.num_heads: {type: categorical, choices: [2, 4, 8]}
      head_dim: {type: int, low: 8, high: 32, step: 8}      # no dot: auxiliary, not a config key
      optim.lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
      pretrain.noise.gaussian: {type: float, low: 0.01, high: 0.2, when: "noise == 'gaussian'"}
    derived:
      model.embed_dim: model.num_heads * head_dim           # an expression of sampled values
    constraints:
      - model.embed_dim % model.num_heads == 0

A dotted name is a config key (``section.key``, nested as deep as needed) and is written into
the trial's training config; a name without a dot is an auxiliary value that derived values and
constraints can use. ``when`` makes a parameter conditional (sampled only when its expression
is true). Expressions are a safe subset of Python: numbers, strings, lists, arithmetic,
comparisons, ``and``/``or``/``not``, ``x if c else y``, ``min``/``max``/``abs``/``round``/
``int``/``float``, and names (dotted config keys or auxiliary names). Names not sampled are
looked up in the base training config, so ``data.patch_size % model.patch_size == 0`` works.
"""

from __future__ import annotations

import ast
import copy
import operator
from dataclasses import dataclass, field
from typing import Any

from lenssr.config import number
from lenssr.errors import ConfigError

_PARAM_TYPES = ("categorical", "int", "float")
_PARAM_KEYS = {"type", "choices", "low", "high", "log", "step", "when"}

_BINOPS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Any] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_FUNCS: dict[str, Any] = {
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "int": int,
    "float": float,
}


class ConstraintViolation(Exception):  # noqa: N818 - a sampled point outside the valid space
    """A sampled parameter set breaks a ``constraints:`` expression (the trial is pruned)."""


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head is not None else None
    return None


def parse_expression(text: str, where: str) -> ast.Expression:
    """Parse ``text`` and check it uses only the allowed syntax; raises :class:`ConfigError`."""
    if not isinstance(text, str):
        raise ConfigError(f"{where}: an expression must be a string, got {text!r}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{where}: cannot parse {text!r} ({exc.msg})") from exc
    allowed = (
        ast.Expression,
        ast.BinOp,
        ast.UnaryOp,
        ast.BoolOp,
        ast.Compare,
        ast.IfExp,
        ast.Constant,
        ast.List,
        ast.Tuple,
        ast.Name,
        ast.Attribute,
        ast.Call,
        ast.Load,
        ast.And,
        ast.Or,
        ast.Not,
        ast.USub,
        ast.UAdd,
        *_BINOPS,
        *_CMPOPS,
    )
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise ConfigError(f"{where}: {type(node).__name__} is not allowed in {text!r}")
        if isinstance(node, ast.Attribute) and _dotted(node) is None:
            raise ConfigError(f"{where}: only dotted names may use '.', in {text!r}")
        if isinstance(node, ast.Call) and (
            not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS or node.keywords
        ):
            raise ConfigError(f"{where}: only {', '.join(_FUNCS)} may be called, in {text!r}")
    return tree


def evaluate(tree: ast.Expression | str, values: dict[str, Any]) -> Any:
    """Evaluate a parsed expression with ``values`` (flat ``{dotted name: value}``)."""
    if isinstance(tree, str):
        tree = parse_expression(tree, "expression")

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name | ast.Attribute):
            name = _dotted(node)
            if name in _FUNCS:
                return _FUNCS[name]
            if name not in values:
                raise ConfigError(f"unknown name {name!r} in a tune expression")
            return values[name]
        if isinstance(node, ast.List | ast.Tuple):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp):
            value = ev(node.operand)
            if isinstance(node.op, ast.Not):
                return not value
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.BoolOp):
            results = (ev(v) for v in node.values)
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, ast.Call):
            return _FUNCS[node.func.id](*(ev(a) for a in node.args))  # type: ignore[attr-defined]
        raise ConfigError(f"unsupported expression node {type(node).__name__}")

    return ev(tree)


@dataclass
class Param:
    """One searched dimension: ``categorical`` (``choices``), ``int`` or ``float``
    (``low``..``high``, optional ``log`` and ``step``), sampled only ``when`` that is true."""

    name: str
    type: str
    choices: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    when: ast.Expression | None = None
    when_text: str | None = None

    @classmethod
    def from_dict(cls, name: str, spec: Any) -> Param:
        """Build and check a parameter from its YAML mapping; raises :class:`ConfigError`."""
        where = f"space.{name}"
        if isinstance(spec, list):
            spec = {"type": "categorical", "choices": spec}
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping like {{type: int, low: 1, high: 8}}")
        bad = sorted(set(spec) - _PARAM_KEYS)
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(bad)}")
        kind = spec.get("type")
        if kind not in _PARAM_TYPES:
            raise ConfigError(f"{where}.type must be one of {', '.join(_PARAM_TYPES)}")
        when = spec.get("when")
        param = cls(
            name=name,
            type=kind,
            log=bool(spec.get("log", False)),
            step=spec.get("step"),
            when=parse_expression(when, f"{where}.when") if when is not None else None,
            when_text=when,
        )
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}.choices must be a non-empty list")
            if not all(c is None or isinstance(c, bool | int | float | str) for c in choices):
                raise ConfigError(
                    f"{where}.choices must be numbers, strings, booleans or null (sample a "
                    "name and build lists with derived:)"
                )
            param.choices = list(choices)
            return param
        for key in ("low", "high"):
            value = number(spec.get(key), f"{where}.{key}", integer=kind == "int")
            setattr(param, key, value if kind == "int" else float(value))
        if param.low > param.high:  # type: ignore[operator]
            raise ConfigError(f"{where}: low {param.low} > high {param.high}")
        if param.log and param.low <= 0:  # type: ignore[operator]
            raise ConfigError(f"{where}: log scale needs low > 0")
        if param.log and param.step is not None:
            raise ConfigError(f"{where}: log and step cannot be combined")
        if param.step is not None and (
            isinstance(param.step, bool)
            or not isinstance(param.step, int | float)
            or param.step <= 0
        ):
            raise ConfigError(f"{where}.step must be a positive number")
        return param

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter from an Optuna trial."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass
class SearchSpace:
    """Parameters, derived values and constraints of one tune YAML."""

    params: list[Param]
    derived: dict[str, ast.Expression] = field(default_factory=dict)
    derived_text: dict[str, str] = field(default_factory=dict)
    constraints: list[tuple[str, ast.Expression]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, space: Any, derived: Any = None, constraints: Any = None) -> SearchSpace:
        """Parse the ``space``, ``derived`` and ``constraints`` entries of a tune YAML."""
        if not isinstance(space, dict) or not space:
            raise ConfigError("space must be a non-empty mapping of name: {type: ...}")
        params = [Param.from_dict(str(name), spec) for name, spec in space.items()]
        derived = derived or {}
        if not isinstance(derived, dict):
            raise ConfigError("derived must be a mapping of config key: expression")
        clash = sorted(set(derived) & set(space))
        if clash:
            raise ConfigError(f"derived and space both define {', '.join(clash)}")
        constraints = constraints or []
        if not isinstance(constraints, list):
            raise ConfigError("constraints must be a list of expressions")
        return cls(
            params=params,
            derived={k: parse_expression(v, f"derived.{k}") for k, v in derived.items()},
            derived_text={str(k): str(v) for k, v in derived.items()},
            constraints=[
                (str(c), parse_expression(c, f"constraints[{i}]"))
                for i, c in enumerate(constraints)
            ],
        )

    def sample(self, trial: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """Draw every active parameter from ``trial`` and compute the derived values.

        Returns ``{name: value}`` (auxiliary names included). ``base``: the flattened base
        config, for names that are not sampled. Raises :class:`ConstraintViolation` naming
        the first constraint that does not hold.
        """
        values: dict[str, Any] = {}
        scope = dict(base or {})
        for param in self.params:
            if param.when is not None and not evaluate(param.when, scope):
                continue
            values[param.name] = scope[param.name] = param.suggest(trial)
        for name, tree in self.derived.items():
            values[name] = scope[name] = evaluate(tree, scope)
        for text, tree in self.constraints:
            if not evaluate(tree, scope):
                shown = ", ".join(f"{n}={scope[n]!r}" for n in sorted(_names(tree)) if n in scope)
                raise ConstraintViolation(f"constraint {text!r} violated ({shown})")
        return values


def _names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name | ast.Attribute):
            name = _dotted(node)
            if name is not None and name not in _FUNCS:
                names.add(name)
    return names


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (every level, so ``"a"`` maps to the sub-dict too)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        out[name] = value
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
    return out


def set_dotted(config: dict[str, Any], name: str, value: Any) -> None:
    """Set ``config["a"]["b"] = value`` for ``name = "a.b"`` (creating sections as needed)."""
    parts = name.split(".")
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{name}: {part!r} is not a config section")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def apply_values(
    config: dict[str, Any], values: dict[str, Any], auxiliary: bool = True
) -> dict[str, Any]:
    """A copy of ``config`` with the names of ``values`` set. With ``auxiliary`` (sampled
    parameters), names without a dot are the space's own helpers (e.g. ``noise``) and are
    skipped; without it (a config's fixed ``set:``), top-level keys such as ``init`` are set
    too."""
    out = copy.deepcopy(config)
    for name, value in values.items():
        if "." in name or not auxiliary:
            set_dotted(out, name, value)
    return out
