"""Model registry, after torchvision's ``_api.py`` and timm's ``create_model``.

Builders register under a name with ``@register_model``; ``create_model`` builds
one by name. A ``+miam`` suffix is the paper's plug-in: ``create_model("resnet50+miam")``
is ``create_model("resnet50", attn_layer="miam")``. Cards written before ``attn_layer``
carry ``miam: bool``; it is read as ``attn_layer="miam"`` or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["PAPER_MODELS", "create_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}

# The seven rows of the paper's Tables 2 and 3, in the paper's order.
PAPER_MODELS = (
    "resnet50",
    "resnet50+miam",
    "effnet",
    "effnet+miam",
    "mobilenet_v2",
    "mobilenet_v2+miam",
    "ilcs",
)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model builder under its function name; a duplicate name is an error."""
    name = fn.__name__
    if name in _MODELS:
        msg = f"a model named {name!r} is already registered"
        raise ValueError(msg)
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of the registered builders, sorted."""
    _import_builders()
    return sorted(_MODELS)


def create_model(name: str, num_classes: int = 6, **kwargs) -> nn.Module:
    """Build a registered model, randomly initialised.

    Args:
        name: A registered name, optionally with the ``+miam`` suffix.
        num_classes: Number of output classes (NEU: 6).
        **kwargs: Hyperparameters of the builder (``attn_layer``, ``head``, ``input_size``...).
    """
    _import_builders()
    if "miam" in kwargs:  # cards written before attn_layer
        kwargs["attn_layer"] = "miam" if kwargs.pop("miam") else None
    base, plus, suffix = name.partition("+")
    if plus:
        if suffix != "miam":
            msg = f"unknown model suffix {'+' + suffix!r} in {name!r}; the only suffix is '+miam'"
            raise ValueError(msg)
        kwargs["attn_layer"] = "miam"
    if base not in _MODELS:
        msg = f"unknown model {name!r}; registered models: {', '.join(sorted(_MODELS))}"
        raise ValueError(msg)
    return _MODELS[base](num_classes=num_classes, **kwargs)


def _import_builders() -> None:
    # Importing the model modules runs their @register_model decorators.
    import model_zoo.models  # noqa: F401
