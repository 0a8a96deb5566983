"""EDPN Restore core: network, degradations, data, losses, metrics, training and inference. No Qt here."""
from .config import PRESETS, EDPNConfig, make_config
from .model_io import build_model, load_model, parameter_breakdown, parameter_count, save_weights

__all__ = ["PRESETS", "EDPNConfig", "make_config", "build_model", "load_model", "parameter_breakdown",
           "parameter_count", "save_weights"]
