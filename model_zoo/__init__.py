"""ILCS model zoo: the paper's attention modules, ILCS, its baselines, a registry,
the checkpoint format and the one preprocessing path."""

from model_zoo.registry import PAPER_MODELS, create_model, list_models, register_model

__all__ = ["PAPER_MODELS", "create_model", "list_models", "register_model"]
