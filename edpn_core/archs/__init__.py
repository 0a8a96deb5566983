from .edpn_arch import (
    EDPN,
    PPT,
    PSA,
    PTB,
    FeatureExtractor,
    ReconstructionBlock,
    pad_to_multiple,
    with_current_names,
)

__all__ = ["EDPN", "FeatureExtractor", "PPT", "PSA", "PTB", "ReconstructionBlock", "pad_to_multiple",
           "with_current_names"]
