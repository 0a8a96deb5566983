"""Training the network: degradations that make (blurry, sharp) pairs, the datasets, the paper's loss, the
training loop with checkpoints and validation, and the freely licensed photos it trains on."""
from .data import PairedFolderDataset, RedsDataset, SyntheticPairDataset
from .degradations import DegradationConfig, degrade
from .losses import EDPNLoss
from .train import StopRequest, TrainConfig, Trainer, TrainingDiverged

__all__ = ["DegradationConfig", "EDPNLoss", "PairedFolderDataset", "RedsDataset", "StopRequest",
           "SyntheticPairDataset", "TrainConfig", "Trainer", "TrainingDiverged", "degrade"]
