"""Models registered by name, created by one factory.

Try: `python -c "from digitrec.nn.models import list_models; print(list_models())"`.

Each architecture is an `nn.Module` built from a typed config dataclass. The checkpoint stores the
model's name and its config as a dict, so `create_model(name, **config)` rebuilds it anywhere.
"""

from __future__ import annotations

import dataclasses
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
