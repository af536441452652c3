"""Model registry and architectures. `create_model("default")` builds the project's network.

Try: `python -c "from digitrec.nn.models import create_model; print(create_model('seed-cnn'))"`.
"""

from . import architectures as _architectures  # noqa: F401  (registers the models)
from .registry import create_model, list_models, model_config, model_entry, register_model

__all__ = ["create_model", "list_models", "model_config", "model_entry", "register_model"]
