from .edpn_arch import EDPN, FeatureExtractor, PPT, PSA, PTB, ReconstructionBlock

__all__ = ["EDPN", "FeatureExtractor", "PPT", "PSA", "PTB", "ReconstructionBlock"]
