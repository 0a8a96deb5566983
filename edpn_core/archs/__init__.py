from .edpn_arch import EDPN, PPT, PSA, PTB, FeatureExtractor, ReconstructionBlock, with_current_names

__all__ = ["EDPN", "FeatureExtractor", "PPT", "PSA", "PTB", "ReconstructionBlock", "with_current_names"]
