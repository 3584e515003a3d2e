"""Strict config files: every YAML a team edits (policy, mappings, taxonomy, releases) and the
environment settings are read through here, so a mistake is refused where it is made, in one form.

Why one home: a typo that lands in a default, or a `KeyError` raised three calls later inside a run,
costs an afternoon; one line naming the file, the key and what is allowed costs a minute. Models are
pydantic v2 with `extra="forbid"` (unknown keys are errors) and declare each default once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or setting is wrong; the message names the file, the key and what is allowed."""


def read_yaml(path: str | Path, text: str | None = None) -> Any:
    """A YAML file's content (or `text`, read from `path` elsewhere), as a ConfigError naming the file
    when it is missing or not YAML."""
    if text is None:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except OSError as error:
            raise ConfigError(f"{path}: cannot be read: {error.strerror or error}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None


def validated(model: type[Model], data: Any, source: str, prefix: str = "") -> Model:
    """`model` from `data`, or a ConfigError listing every problem as `<source>: <key>: <problem>`.

    An unknown key lists the keys allowed where it was found; a wrong value gives pydantic's reason
    (which names the allowed choices of a Literal) and the value found."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: " + "; ".join(_problem(model, item, prefix) for item in error.errors())) from None


def _problem(model: type[BaseModel], item: dict, prefix: str) -> str:
    key = prefix + ".".join(str(part) for part in item["loc"])
    if item["type"] == "extra_forbidden":
        return f"{key}: unknown setting (allowed here: {', '.join(_fields_at(model, item['loc']))})"
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "missing":
        return f"{key}: required setting is missing"
    if not key:  # a check over the whole file or entry
        return message
    bounds = _bounds(model, item["loc"])
    return f"{key}: {message} (got {item.get('input')!r}" + (f"; allowed: {bounds})" if bounds else ")")


def _bounds(model: type[BaseModel], loc: tuple) -> str:
    """The full range of a numeric setting (`> 0 and < 1`): pydantic names only the bound that failed."""
    fields = _model_at(model, loc).model_fields if loc else {}
    field = next((f for name, f in fields.items() if str(loc[-1]) in (name, f.alias)), None)
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    parts = [f"{symbols[name]} {getattr(m, name)}" for m in getattr(field, "metadata", ()) for name in symbols
             if getattr(m, name, None) is not None]
    return " and ".join(parts)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed where an unknown one was found."""
    return sorted(f.alias or name for name, f in _model_at(model, loc).model_fields.items())


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The nested model that holds the last key of `loc` (through dict[str, Model] and list[Model] too)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif hasattr(annotation, "__args__"):
            inner = [a for a in annotation.__args__ if isinstance(a, type) and issubclass(a, BaseModel)]
            model = inner[0] if inner else model
    return model
