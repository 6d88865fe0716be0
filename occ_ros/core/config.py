"""Typed dataclass configs from YAML: one loader, strict about names and types.

Every stage keeps its settings in frozen dataclasses with defaults; a YAML file only overrides
what it names. Unknown keys are errors that list the known ones (a typo must not silently fall
back to a default), and values are converted to the field's declared type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or section does not match its dataclass (names the file and key)."""


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
        raise ConfigError(f"{where}: {value!r} matches none of {hint}: {'; '.join(errors)}")
    if origin is typing.Literal:
        if isinstance(value, bool):  # YAML 1.1 reads off / on / no / yes as booleans: take the word back
            words = ("off", "no", "false") if not value else ("on", "yes", "true")
            value = next((a for a in args if a in words), value)
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=False)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint in (int, float, str):
        if isinstance(value, bool) or (hint is int and isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
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
    kwargs = {name: _convert(value, hints[name], f"{where}.{name}") for name, value in data.items()}
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


def check_choices(instance: DataclassInstance) -> None:
    """Check every ``Literal``-typed field of a dataclass instance (call it from ``__post_init__``).

    :func:`from_mapping` checks Literal fields when a config is loaded; this covers direct construction
    (``RenderingConfig(depth_mode="median")``), so a config class needs no hand-written list of its words.

    Raises:
        ValueError: ``"<Class>: <field> must be one of [<words>], got <value>"``.
    """
    cls = type(instance)
    for name, choices in _literal_fields(cls):
        value = getattr(instance, name)
        if value not in choices:
            raise ValueError(f"{cls.__name__}: {name} must be one of {list(choices)}, got {value!r}")


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
