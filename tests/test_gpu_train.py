"""The GPU command sequence, end to end on the CPU with a tiny network: pack, two resumable chunks, join."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edpn_core.model_io import load_model, read_weights_info
from edpn_core.training.checkpoint import read_checkpoint

TOOL = Path(__file__).parents[1] / "tools" / "gpu_train.py"


@pytest.fixture
def gpu_train():
    spec = importlib.util.spec_from_file_location("gpu_train", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_chunks_and_join_bring_back_checked_weights(gpu_train, tmp_path, tiny_overrides):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    pack = tmp_path / "pack"
    assert gpu_train.main(["pack", str(photos), "--select", str(photos), "--dest", str(pack), "--max-mib", "0.2",
                           "--select-mib", "0.05"]) == 0
    assert sum(f.stat().st_size for f in pack.rglob("*") if f.is_file()) <= 0.2 * 2**20
    run = tmp_path / "runs" / "tiny"
    train_args = ["--", "--data", str(pack / "train" / "crops"), "--val-data", str(pack / "select" / "crops"),
                  "--val-items", "2", "--val-patch", "8", "--out-dir", str(run), "--lq-patch", "8", "--batch-size", "2",
                  "--iterations", "50", "--warmup", "0", "--set", "tensorboard=false",
                  "--set", f"model_overrides={json.dumps(tiny_overrides)}"]
    for chunk in (1, 2):
        out = tmp_path / f"out{chunk}"
        # A zero budget stops after one iteration: each call is one resumable chunk.
        assert gpu_train.main(["chunk", "--out", str(out), "--name", "tiny", "--budget", "0", "--part-mib", "0.03",
                               *train_args]) == 0
        summary = json.loads((out / "tiny.summary.json").read_text())
        assert (summary["iteration"], summary["resumed"]) == (chunk, chunk > 1)
        parts = sorted(out.glob("tiny.safetensors.part*"))
        assert len(parts) > 1 and all(p.stat().st_size <= 0.03 * 2**20 for p in parts)
        assert len(list(out.iterdir())) <= 8

    weights = tmp_path / "home" / "tiny.safetensors"
    assert gpu_train.main(["join", str(out / "tiny.safetensors.manifest.json"), str(weights)]) == 0
    assert read_weights_info(weights).metadata["iterations"] == "2"
    model, _ = load_model(weights)
    ema = read_checkpoint(run / "checkpoint.pth")["model"]
    for name, value in model.state_dict().items():
        assert np.allclose(value.numpy(), ema[name].half().float().numpy()), name

    parts[0].write_bytes(parts[0].read_bytes()[:-1] + b"x")
    assert gpu_train.main(["join", str(out / "tiny.safetensors.manifest.json"), str(tmp_path / "bad.st")]) == 2
    assert not (tmp_path / "bad.st").exists()
