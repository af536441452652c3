"""Models registered by name, created by one factory.

Try: `python -c "from digitrec.nn.models import list_models; print(list_models())"`.

Each architecture is an `nn.Module` built from a typed config dataclass. The checkpoint stores the
model's name and its config as a dict, so `create_model(name, **config)` rebuilds it anywhere.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

from ...errors import DigitrecError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_cls: type
    build: Callable[[Any], Any]  # config -> nn.Module
    description: str


@dataclass(frozen=True)
class Bound:
    """The values one config field may take when it comes from a file (a checkpoint's metadata):
    `low` to `high` inclusive, or one of `choices`; a tuple field also holds 1 to `max_items` items.
    A config class lists them in its `BOUNDS` class variable; `check_config` enforces them."""

    low: float = -math.inf
    high: float = math.inf
    choices: tuple[int, ...] = ()
    max_items: int = 0


SHOWN_CHARS = 40  # of a bad value quoted in an error message: enough to recognise, short enough for one line

# Filled by the architecture modules as `digitrec.nn.models` imports them (as timm does).
_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config_cls: type, description: str) -> Callable:
    """Class decorator: `@register_model("lenet5", LeNet5Config, "...")` over an nn.Module
    whose constructor takes the config."""

    def wrap(module_cls: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, config_cls, module_cls, description)
        return module_cls

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise DigitrecError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _REGISTRY[name]


def shown(value: Any) -> str:
    """A value from a file, as an error message quotes it: its repr, cut short (a file can hold megabytes)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _check_value(field: str, kind: Any, value: Any, bound: Bound | None) -> None:
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        wanted = "a finite number"
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
        wanted = "an integer"
    if not ok:
        raise DigitrecError(f"{field} is {shown(value)}, not {wanted}")
    if bound is not None and bound.choices and value not in bound.choices:
        raise DigitrecError(f"{field} is {shown(value)}, not one of {', '.join(map(str, bound.choices))}")
    if bound is not None and not bound.low <= value <= bound.high:
        raise DigitrecError(f"{field} is {shown(value)}, outside {bound.low:g} to {bound.high:g}")


def check_config(name: Any, config: Any) -> None:
    """Refuse what `create_model(name, **config)` must not be given from an untrusted file (a
    checkpoint's metadata): an unknown model, unknown options, wrong types, or values outside the
    config class's BOUNDS. DigitrecError naming the field; nothing is built or allocated."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise DigitrecError(f"model.name {shown(name)} is not a known model ({', '.join(list_models())})")
    entry = _REGISTRY[name]
    if not isinstance(config, dict):
        raise DigitrecError(f"model.config is {type(config).__name__}, not an object")
    kinds = typing.get_type_hints(entry.config_cls)
    bounds: dict[str, Bound] = getattr(entry.config_cls, "BOUNDS", {})
    fields = {f.name for f in dataclasses.fields(entry.config_cls)}
    for key, value in config.items():
        field = f"model.config.{key}"
        if key not in fields:
            raise DigitrecError(f"{shown(field)} is not an option of model {name!r} ({', '.join(sorted(fields))})")
        kind, bound = kinds[key], bounds.get(key)
        if typing.get_origin(kind) is tuple:  # tuple[int, ...]: JSON gives a list
            most = bound.max_items if bound is not None and bound.max_items else math.inf
            if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= most:
                raise DigitrecError(f"{field} is {shown(value)}, not a list of 1 to {most} items")
            for i, item in enumerate(value):
                _check_value(f"{field}[{i}]", typing.get_args(kind)[0], item, bound)
        else:
            _check_value(field, kind, value, bound)


def create_model(name: str, **config: Any) -> nn.Module:
    """Build model `name`; keyword arguments override fields of its config dataclass."""
    entry = model_entry(name)
    fields = {f.name for f in dataclasses.fields(entry.config_cls)}
    unknown = set(config) - fields
    if unknown:
        raise DigitrecError(
            f"model {name!r} has no option(s) {', '.join(sorted(unknown))}; "
            f"its options are: {', '.join(sorted(fields))}"
        )
    # JSON (checkpoint metadata) turns tuples into lists; configs are frozen, so use tuples.
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    model = entry.build(entry.config_cls(**config))
    model.model_name = name  # what the checkpoint records to rebuild it
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """The config a model was built with, as plain JSON-serialisable values."""
    config = model.config  # every registered model keeps the dataclass it was built from
    assert dataclasses.is_dataclass(config) and not isinstance(config, type), f"{type(model).__name__} has no config"
    return dataclasses.asdict(config)
