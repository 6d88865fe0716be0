"""Typed dataclass configs from YAML: one loader, strict about names and types.

Every stage keeps its settings in frozen dataclasses with defaults; a YAML file only overrides
what it names. Unknown keys are errors that list the known ones (a typo must not silently fall
back to a default), and values are converted to the field's declared type. A numeric field declares its
allowed values as ``Annotated[float, Range(gt=0)]``; :func:`from_mapping` checks them before building the
config, and :func:`check_fields` (from ``__post_init__``) when a config is built directly.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or section does not match its dataclass (names the file and key).

    Attributes:
        key: the dotted key at fault, relative to the mapping :func:`from_mapping` was given (None: not one key's).
        problem: what is wrong with its value, with ``{got}`` where the value goes (``": expected int, got {got}"``).
        value: the value at fault.
    """

    def __init__(self, message: str, key: str | None = None, problem: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.key, self.problem, self.value = key, problem, value

    def told(self, where: str, shown: str | None = None) -> ConfigError:
        """The same problem told as ``"<where><key><problem>"``, the value written as ``shown`` when given (the
        text the user typed, e.g. YAML's ``no`` rather than ``False``)."""
        if self.key is None or self.problem is None:
            return self
        got = shown if shown is not None else repr(self.value)
        return ConfigError(f"{where}{self.key}{self.problem.format(got=got)}", self.key, self.problem, self.value)


def _bad(where: str, problem: str, value: Any) -> ConfigError:
    """An error about the value at ``where`` (:func:`from_mapping` fills in its key on the way out)."""
    return ConfigError(f"{where}{problem.format(got=repr(value))}", "", problem, value)


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric config field: ``Annotated[float, Range(gt=0)]``. For a tuple field every
    item must lie in it; None (an optional field left unset) is always allowed.

    Attributes:
        gt, ge, lt, le: open / closed lower and upper bounds (None: unbounded).
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def describe(self) -> str:
        """``> 0``, ``>= 1``, ``<= 1`` or ``in [0, 1)``."""
        low = f"({self.gt:g}" if self.gt is not None else f"[{self.ge:g}" if self.ge is not None else ""
        high = f"{self.lt:g})" if self.lt is not None else f"{self.le:g}]" if self.le is not None else ""
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>' if self.gt is not None else '>='} {low[1:]}"
        if high:
            return f"{'<' if self.lt is not None else '<='} {high[:-1]}"
        return "a number"

    def holds(self, value: Any) -> bool:
        """Whether ``value`` (a number, a tuple of numbers, or None) lies in the range (NaN never does)."""
        if value is None:
            return True
        if isinstance(value, (tuple, list)):
            return all(self.holds(v) for v in value)
        v = float(value)
        return (
            not math.isnan(v)
            and (self.gt is None or v > self.gt)
            and (self.ge is None or v >= self.ge)
            and (self.lt is None or v < self.lt)
            and (self.le is None or v <= self.le)
        )


#: Range-annotated fields per dataclass: name -> Range; filled on first use.
_RANGE_FIELDS: dict[type, dict[str, Range]] = {}


def _range_of(hint: Any) -> Range | None:
    if typing.get_origin(hint) is typing.Annotated:
        return next((m for m in hint.__metadata__ if isinstance(m, Range)), None)
    for arg in typing.get_args(hint):  # Optional[Annotated[...]], tuple[Annotated[...], ...]
        found = _range_of(arg)
        if found is not None:
            return found
    return None


def range_fields(cls: type) -> dict[str, Range]:
    """The :class:`Range` of every field of dataclass ``cls`` that declares one."""
    found = _RANGE_FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        pairs = ((f.name, _range_of(hints.get(f.name))) for f in dataclasses.fields(cls))
        found = _RANGE_FIELDS[cls] = {name: r for name, r in pairs if r is not None}
    return found


def _range_problem(rng: Range, value: Any) -> str | None:
    """``" must be > 0, got {got}"`` when ``value`` is outside ``rng``, else None."""
    if rng.holds(value):
        return None
    every = " (every item)" if isinstance(value, (tuple, list)) else ""
    return f" must be {rng.describe()}{every}, got {{got}}"


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_mapping(hint, value, where)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except (ConfigError, TypeError, ValueError) as err:
                errors.append(str(err))
        matched = "; ".join(errors).replace("{", "{{").replace("}", "}}")
        raise _bad(where, f": {{got}} matches none of {hint}: {matched}", value)
    if origin is typing.Literal:
        if isinstance(value, bool):  # YAML 1.1 reads off / on / no / yes as booleans: take the word back
            words = ("off", "no", "false") if not value else ("on", "yes", "true")
            value = next((a for a in args if a in words), value)
        if value not in args:
            raise _bad(where, f": expected one of {list(args)}, got {{got}}", value)
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _bad(where, ": expected a list, got {got}", value)
        variadic = len(args) == 2 and args[1] is Ellipsis
        if args and not variadic and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        items = [args[0]] * len(value) if variadic else list(args or [Any] * len(value))
        try:
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, items, strict=False)))
        except ConfigError as err:
            raise ConfigError(str(err)) from None  # an item's error: not told as the whole field's
    if hint is bool:
        if not isinstance(value, bool):
            raise _bad(where, ": expected true or false, got {got}", value)
        return value
    if hint in (int, float, str):
        if isinstance(value, bool) or (hint is int and isinstance(value, float) and not value.is_integer()):
            raise _bad(where, f": expected {hint.__name__}, got {{got}}", value)
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise _bad(where, f": expected {hint.__name__}, got {{got}}", value) from None
    return value


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, recursing into nested dataclass fields.

    Args:
        cls: a dataclass type whose fields all have defaults (missing keys keep them).
        data: the values to override (None or {} gives the defaults).
        where: a description for errors, e.g. ``"labels.yaml: lifting"``.
    Raises:
        ConfigError: unknown keys, wrong types, or the dataclass' own validation failing.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; {cls.__name__} has {sorted(fields)}")
    ranges = range_fields(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        try:
            kwargs[name] = _convert(value, hints[name], f"{where}.{name}")
            problem = _range_problem(ranges[name], kwargs[name]) if name in ranges else None
            if problem is not None:
                raise _bad(f"{where}.{name}", problem, value)
        except ConfigError as err:
            if err.key is None:
                raise
            key = f"{name}.{err.key}" if err.key else name
            raise ConfigError(str(err), key, err.problem, err.value) from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def literal_choices(hint: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal[...]`` type hint (``Literal[...] | None`` adds None); None for other hints."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        values: list[Any] = []
        for arg in typing.get_args(hint):
            part = (None,) if arg is type(None) else literal_choices(arg)
            if part is None:
                return None
            values.extend(part)
        return tuple(values)
    return None


#: Literal-typed fields per dataclass: (name, allowed values); filled on first use.
_LITERAL_FIELDS: dict[type[DataclassInstance], tuple[tuple[str, tuple[Any, ...]], ...]] = {}


def _literal_fields(cls: type[DataclassInstance]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    found = _LITERAL_FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        pairs = ((f.name, literal_choices(hints.get(f.name))) for f in dataclasses.fields(cls))
        found = _LITERAL_FIELDS[cls] = tuple((name, choices) for name, choices in pairs if choices is not None)
    return found


def check_fields(instance: DataclassInstance) -> None:
    """Check every ``Literal``-typed and every :class:`Range`-annotated field of a dataclass instance (call it from
    ``__post_init__``).

    :func:`from_mapping` checks these fields when a config is loaded (naming the dotted key); this covers direct
    construction (``RenderingConfig(depth_mode="median")``, ``OptimConfig(lr=-1)``), so a config class needs no
    hand-written list of its words or bounds.

    Raises:
        ValueError: ``"<Class>: <field> must be one of [<words>], got <value>"`` or
            ``"<Class>: <field> must be > 0, got <value>"``.
    """
    cls = type(instance)
    for name, choices in _literal_fields(cls):
        value = getattr(instance, name)
        if value not in choices:
            raise ValueError(f"{cls.__name__}: {name} must be one of {list(choices)}, got {value!r}")
    for name, rng in range_fields(cls).items():
        value = getattr(instance, name)
        problem = _range_problem(rng, value)
        if problem is not None:
            raise ValueError(f"{cls.__name__}: {name}{problem.format(got=repr(value))}")


def load_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file gives {}).

    Args:
        what: how errors name the file, e.g. ``"vocabulary file"``.
    Raises:
        ConfigError: unreadable file, invalid YAML, or a top level that is not a mapping.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def flatten_keys(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> one level with dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_keys(value, name + "."))
        else:
            flat[name] = value
    return flat


def yaml_source_text(path: str | Path, key: str) -> str | None:
    """The scalar at dotted ``key`` of a YAML file exactly as written (``no``, where PyYAML reads False); None
    when the file cannot be read again or has no scalar there."""
    import yaml

    try:
        node = yaml.compose(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
    return node.value if isinstance(node, yaml.ScalarNode) else None


def told_from_file(err: ConfigError, path: str | Path) -> ConfigError:
    """A :func:`from_mapping` error about a value of YAML file ``path``, told as ``"<path>: <key>: <problem>"``,
    with a YAML 1.1 word (``no``, ``off``, ``yes``) shown as the user wrote it rather than as the boolean PyYAML
    made of it."""
    if err.key is None:
        return err
    shown = None
    if isinstance(err.value, bool):
        text = yaml_source_text(path, err.key)
        shown = repr(text) if text is not None else None
    return err.told(f"{path}: ", shown)
