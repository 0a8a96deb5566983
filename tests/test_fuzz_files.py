"""Fuzz (fixed seed, seconds): mutated weights files and images never crash the CLI or show a traceback; each bad
file gets one line naming it and the documented exit code."""
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin, features

from edpn_core import build_model, save_weights
from edpn_core.cli import main
from edpn_core.inference.imageio.iptc import jpeg_iptc_segment

MUTATIONS = 24


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: flipped bytes, a cut, inserted junk, or a header field rewritten (the bytes a parser trusts most)."""
    buffer = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:
        for at in rng.integers(0, len(buffer), size=int(rng.integers(1, 16))):
            buffer[at] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        buffer = buffer[: int(rng.integers(0, len(buffer)))]
    elif kind == 2:
        at = int(rng.integers(0, len(buffer)))
        buffer[at:at] = rng.bytes(int(rng.integers(1, 64)))
    else:
        head = int(rng.integers(0, min(len(buffer), 2048)))
        buffer[head:head + 8] = rng.bytes(8)
    return bytes(buffer)


def mutate_config(data: bytes, rng: np.random.Generator) -> bytes:
    """A safetensors file whose model config has one field set to a hostile value (header length kept valid)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    config = json.loads(header["__metadata__"]["config"])
    field = sorted(config)[int(rng.integers(len(config)))]
    config[field] = [None, -1, 0, 40000, 2**63, 1.5, "8", True, [], {}][int(rng.integers(10))]
    header["__metadata__"]["config"] = json.dumps(config)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data[8 + size:]


@pytest.fixture
def files(tmp_path, tiny_overrides):
    folder = tmp_path / "originals"
    torch.manual_seed(0)
    weights = save_weights(build_model("lite", "sr", **tiny_overrides), folder / "good.safetensors", "lite")
    rgb = (np.random.default_rng(0).random((20, 28, 3)) * 255).astype(np.uint8)
    images = {}
    formats = [("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif"), ("WEBP", ".webp"), ("BMP", ".bmp")]
    text = PngImagePlugin.PngInfo()  # mutations of the text a restore keeps: plain, compressed, international
    text.add_text("parameters", "a cat, Steps: 20")
    text.add_text("workflow", '{"3": {"class_type": "KSampler"}}' * 4, zip=True)
    text.add_itxt("Title", "Café ☕", lang="fr", tkey="Titre")
    iptc = jpeg_iptc_segment(b"\x1c\x02\x78\x00\x0bCafe, dusk.\x1c\x02\x19\x00\x03cat")  # caption, keyword
    metadata = {"PNG": {"pnginfo": text}, "JPEG": {"comment": "Noël ✓".encode(), "extra": iptc}}
    for fmt, ext in formats + ([("AVIF", ".avif")] if features.check("avif") else []):
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, fmt, **metadata.get(fmt, {}))
        images[ext] = buffer.getvalue()
    return folder, weights, images


def check_one_line(stderr: str, path, code: int, expected: int) -> None:
    assert "Traceback" not in stderr and code != 3, stderr
    if code == expected:
        mentions = [line for line in stderr.splitlines() if str(path) in line]
        assert len(mentions) == 1, stderr


def test_mutated_weights_files(files, tmp_path, capsys):
    folder, good, _ = files
    rng = np.random.default_rng(12)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(photo)
    original = good.read_bytes()
    refused = 0
    for i in range(MUTATIONS):
        bad = tmp_path / f"m{i}.safetensors"
        bad.write_bytes(mutate_config(original, rng) if i % 3 == 0 else mutate(original, rng))
        code = main(["info", str(bad)])
        check_one_line(capsys.readouterr().err, bad, code, expected=1)
        assert code in (0, 1)
        out = tmp_path / f"out{i}"
        code = main(["restore", str(photo), "-o", str(out), "--task", "sr", "--weights", str(bad), "--tile", "whole"])
        check_one_line(capsys.readouterr().err, bad, code, expected=2)
        assert code in (0, 2)
        if code == 2:
            refused += 1
            assert not out.exists()
    assert refused >= MUTATIONS // 2  # the fuzz reaches the checks, not only the lucky survivors


def test_mutated_images(files, tmp_path, capsys):
    _, weights, images = files
    rng = np.random.default_rng(34)
    folder = tmp_path / "in"
    folder.mkdir()
    extensions = sorted(images)
    for i in range(MUTATIONS * 2):
        ext = extensions[i % len(extensions)]
        (folder / f"m{i}{ext}").write_bytes(mutate(images[ext], rng))
    for path in sorted(folder.iterdir()):
        code = main(["info", str(path)])
        check_one_line(capsys.readouterr().err, path, code, expected=1)
        assert code in (0, 1)
    out = tmp_path / "out"
    code = main(["restore", str(folder), "-o", str(out), "--task", "sr", "--weights", str(weights), "--tile", "whole"])
    stderr = capsys.readouterr().err
    assert code in (0, 1) and "Traceback" not in stderr
    failed = {re.match(rf"failed: {re.escape(str(folder))}/(m\d+)\.\w+: ", line).group(1)
              for line in stderr.splitlines() if line.startswith("failed: ")}
    written = sorted(out.iterdir()) if out.exists() else []
    assert not [p for p in written if p.name.startswith(".")]
    restored = {p.stem for p in written}
    assert failed.isdisjoint(restored) and len(failed | restored) == MUTATIONS * 2
