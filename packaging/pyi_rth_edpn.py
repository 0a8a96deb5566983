"""PyInstaller runtime hook of EDPN Restore; build.spec puts it first, before PyInstaller's own PySide6 hook.

1. A CPU-only bundle (EDPN_DIST_CUDA=prune, the default, or stub) ships torch's CUDA build without the CUDA
   libraries that torch only loads on first GPU use (cuDNN's kernels, cuSOLVER, ...), or with stand-ins for them.
   Hiding every GPU keeps torch on the CPU instead of failing inside a missing library on a machine with an
   NVIDIA card. build.spec writes the mode into `edpn_dist_mode.txt` next to the bundled data.
2. torch is imported here, before PyInstaller's PySide6 runtime hook imports QtCore: on Windows, Qt's DLLs loaded
   first make torch's DLLs fail to initialise.
"""
import os
import sys


def _edpn_rthook():
    mode_file = os.path.join(sys._MEIPASS, "edpn_dist_mode.txt")
    try:
        with open(mode_file, encoding="utf-8") as f:
            mode = f.read().strip()
    except OSError:
        mode = "prune"
    if mode != "keep":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch  # noqa: F401


_edpn_rthook()
del _edpn_rthook
