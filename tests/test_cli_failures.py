"""What a user gets from the command line and the file layer when things go wrong: one line, the documented exit
code, inputs untouched and nothing left behind."""
import errno
import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edpn_core import build_model, cli
from edpn_core.cli import main
from edpn_core.inference.engine import OutputTooLarge, Restorer, RunSettings
from edpn_core.inference.imageio import ImageError, code_values, load_image, save_image

REPO = Path(__file__).resolve().parents[1]




def error_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def png_header_only(width: int, height: int) -> bytes:
    """A few dozen bytes that declare a width x height PNG (a decompression bomb's header)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_unknown_device_is_a_usage_error_in_one_line(photo, tiny_sr_weights, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["restore", str(photo), "-o", str(out), "--task", "sr", "--weights", str(tiny_sr_weights),
                 "--device", "banana"]) == 2
    (line,) = error_lines(capsys)
    assert "banana" in line
    assert not out.exists()


def test_the_program_exits_with_its_commands_status(photo, tiny_sr_weights, tmp_path):
    """`edpn` runs main with its process settings (edpn_core.heap, the frozen exit); main's status is the exit's."""
    def edpn(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edpn_core.cli", "restore", str(photo), "--task", "sr",
                               "--weights", str(tiny_sr_weights), *args], cwd=REPO, capture_output=True, text=True,
                              timeout=300)

    restored = edpn("-o", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == [photo.name]
    refused = edpn("-o", str(tmp_path / "other"), "--device", "banana")
    assert refused.returncode == 2
    assert "banana" in refused.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("device", ["meta", "banana:3"])
def test_a_device_that_computes_nothing_is_a_usage_error(device, photo, tiny_sr_weights, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["restore", str(photo), "-o", str(out), "--task", "sr", "--weights", str(tiny_sr_weights),
                 "--device", device]) == 2
    (line,) = error_lines(capsys)
    assert f"--device {device}: not a device to run on" in line
    assert not out.exists()


def test_an_output_folder_that_cannot_be_written_is_found_before_restoring(photo, tiny_sr_weights, tmp_path, capsys,
                                                                            monkeypatch):
    """(As root no folder is read-only to the tests: the refusal of the operating system is simulated.)"""
    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("edpn_core.inference.imageio.writing.tempfile.TemporaryFile", read_only)
    monkeypatch.setattr(Restorer, "restore_array", lambda *a, **k: pytest.fail("restored first"))
    out = tmp_path / "out"
    assert main(["restore", str(photo), "-o", str(out), "--task", "sr", "--weights", str(tiny_sr_weights)]) == 2
    (line,) = error_lines(capsys)
    assert line == f"edpn restore: {out}: cannot write into this folder (Permission denied)"


def test_output_naming_a_file_is_a_usage_error(photo, tiny_sr_weights, tmp_path, capsys):
    target = tmp_path / "out.png"
    target.write_bytes(b"keep me")
    assert main(["restore", str(photo), "-o", str(target), "--task", "sr", "--weights", str(tiny_sr_weights)]) == 2
    (line,) = error_lines(capsys)
    assert str(target) in line
    assert target.read_bytes() == b"keep me"


@pytest.mark.parametrize("tile", ["1", "0"])
def test_tiles_too_small_for_invisible_seams_are_refused(photo, tiny_sr_weights, tmp_path, tile, capsys):
    """0 is no tile size: the whole image in one piece is asked for as 'whole'."""
    with pytest.raises(SystemExit) as exit_:
        main(["restore", str(photo), "-o", str(tmp_path / "out"), "--task", "sr", "--weights", str(tiny_sr_weights),
              "--tile", tile])
    assert exit_.value.code == 2
    assert "tile must be 'auto', 'whole' or a size of at least 32 px" in capsys.readouterr().err


def test_skipping_and_overwriting_existing_outputs_together_is_a_usage_error(photo, tiny_sr_weights, tmp_path,
                                                                            capsys):
    """Before, the pair silently skipped; now it is refused before anything is read or written."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["restore", str(photo), "-o", str(out), "--task", "sr", "--weights", str(tiny_sr_weights),
              "--overwrite", "--skip-existing"])
    assert exit_.value.code == 2
    assert "--skip-existing: not allowed with argument --overwrite" in capsys.readouterr().err
    assert not out.exists()


def test_unexpected_error_is_one_line_naming_the_traceback_file(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something nobody expected")

    monkeypatch.setitem(cli.COMMANDS, "info", broken)
    assert main(["info"]) == 3
    (line,) = error_lines(capsys)
    assert "something nobody expected" in line
    report = Path(line.rsplit(" ", 1)[-1])
    try:
        text = report.read_text()
        assert "Traceback" in text and "something nobody expected" in text
    finally:
        report.unlink()


def test_pixel_limit_is_configurable_and_named(photo, tiny_sr_weights, tmp_path, capsys, monkeypatch, recwarn):
    bomb = photo.parent / "bomb.png"
    bomb.write_bytes(png_header_only(12500, 12000))  # 150 MP in a hundred bytes
    out = tmp_path / "out"
    assert main(["restore", str(photo.parent), "-o", str(out), "--task", "sr", "--weights", str(tiny_sr_weights)]) == 1
    assert not recwarn.list  # a warning would reach the terminal as a second, unasked-for message
    failed = [line for line in error_lines(capsys) if line.startswith("failed:")]
    assert failed == [f"failed: {bomb}: image is 12500 x 12000 (150.0 MP), over the 100 MP limit "
                      "(raise it with EDPN_MAX_MEGAPIXELS or --max-megapixels)"]
    assert sorted(p.name for p in out.iterdir()) == ["photo.png"]

    monkeypatch.setenv("EDPN_MAX_MEGAPIXELS", "0.0005")
    with pytest.raises(ImageError, match="over the 0.0005 MP limit"):
        load_image(photo)
    monkeypatch.delenv("EDPN_MAX_MEGAPIXELS")
    assert main(["restore", str(photo), "-o", str(tmp_path / "small"), "--task", "sr", "--weights",
                 str(tiny_sr_weights), "--max-megapixels", "0.0005"]) == 1
    assert any("0.0005 MP limit" in line for line in error_lines(capsys))


def test_header_is_checked_before_the_file_is_read(tmp_path):
    junk = tmp_path / "junk.png"
    with open(junk, "wb") as f:  # sparse: a gigabyte on paper, nothing on disk
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(1 << 30)
    padded = {}
    for ext in (".png", ".webp", ".jpg", ".tif"):
        padded[ext] = tmp_path / f"padded{ext}"
        Image.new("RGB", (8, 8)).save(padded[ext])
        with open(padded[ext], "r+b") as f:
            f.truncate(1 << 30)
    big_chunk = tmp_path / "big_chunk.png"  # Pillow would read every chunk before the pixels while parsing
    with open(big_chunk, "wb") as f:
        f.write(png_header_only(8, 8)[:33] + struct.pack(">I", 1 << 30) + b"zzZz")
        f.truncate(1 << 30)
    tracemalloc.start()
    try:
        for path in (junk, big_chunk, *padded.values()):
            with pytest.raises(ImageError, match=path.name):
                load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_temp_files_of_killed_runs_are_removed_by_the_next_run(photo, tiny_sr_weights, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead_writer = out / ".photo.png.4194999-0badf00d.tmp"  # above Linux's largest pid: that process cannot exist
    old_unknown_writer = out / ".other.png.deadbeef.tmp"
    live_writer = out / f".photo.png.{os.getppid()}-12345678.tmp"
    for path in (dead_writer, old_unknown_writer, live_writer):
        path.write_bytes(b"half a file")
    two_hours_ago = time.time() - 7200
    os.utime(old_unknown_writer, (two_hours_ago, two_hours_ago))
    assert main(["restore", str(photo), "-o", str(out), "--task", "sr", "--weights", str(tiny_sr_weights)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["photo.png", live_writer.name])


def test_failed_cleanup_does_not_hide_why_the_write_failed(tmp_path, monkeypatch):
    def refuse_create(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    def refuse_unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr("edpn_core.inference.imageio.writing.os.open", refuse_create)
    monkeypatch.setattr(Path, "unlink", refuse_unlink)
    with pytest.raises(ImageError, match="out.png: cannot write file \\(Permission denied\\)"):
        save_image(tmp_path / "out.png", np.zeros((4, 4, 3), np.float32))


def test_sigterm_during_a_write_leaves_nothing_and_says_so(photo, tiny_sr_weights, tmp_path):
    """The process is sent SIGTERM from inside the write (after the data, before the rename); the file that
    failed before it is still listed."""
    (photo.parent / "a_broken.png").write_bytes(b"")
    out = tmp_path / "out"
    script = ("import os, signal, sys\n"
              "import edpn_core.inference.imageio.writing as io\n"
              "real = io.os.fsync\n"
              "def fsync_then_term(fd):\n"
              "    real(fd)\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "io.os.fsync = fsync_then_term\n"
              "from edpn_core.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, "restore", str(photo.parent), "-o", str(out), "--task",
                           "sr", "--weights", str(tiny_sr_weights)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 143
    *_, failed, last = done.stderr.strip().splitlines()
    assert last.endswith("edpn restore: terminated (SIGTERM)")  # after the bars
    assert failed.endswith(f"failed: {photo.parent / 'a_broken.png'}: file is empty")
    assert "Traceback" not in done.stderr
    assert list(out.iterdir()) == []


def test_sr_output_as_code_values_matches_the_float_output(tiny_overrides):
    torch.manual_seed(0)
    restorer, run = Restorer(models=[build_model("lite", "sr", **tiny_overrides)], overlap=8), RunSettings(32)
    img = np.random.default_rng(1).random((72, 56, 3)).astype(np.float32)
    floats = restorer.restore_array(img, run)
    assert floats.dtype == np.float32 and floats.shape == (288, 224, 3)
    for bits in (8, 16):
        np.testing.assert_array_equal(restorer.restore_array(img, run, bit_depth=bits), code_values(floats, bits))


def test_output_too_large_is_named_as_such_not_blamed_on_the_tile(tiny_overrides, monkeypatch):
    restorer = Restorer(models=[build_model("lite", "sr", **tiny_overrides)])
    real_empty = np.empty

    def no_room_for_output(shape, dtype=float, *args, **kwargs):
        if tuple(shape) == (160, 128, 3):
            raise MemoryError()
        return real_empty(shape, dtype, *args, **kwargs)

    monkeypatch.setattr(np, "empty", no_room_for_output)
    messages = []
    with pytest.raises(OutputTooLarge, match="128 x 160 output itself"):
        restorer.restore_array(np.zeros((40, 32, 3), np.float32), RunSettings(32),
                               progress=lambda p: messages.append(p.message))
    assert not any("retrying" in m for m in messages)


def test_refusing_hostile_files_stays_under_1_gb(photo, tiny_sr_weights, tiny_overrides, tmp_path):
    """Measured in a fresh process, above what its imports take: each of these once cost gigabytes (a 9000 x 9000
    JPEG header on 800 bytes was decoded and restored, a zip bomb inflated, 40000 channels or a batch of 100000
    allocated) before it was refused."""
    from test_hostile_weights import DEEP, bad_checkpoint, bad_safetensors
    from test_imageio import forged_jpeg

    forged = photo.parent / "forged.jpg"
    forged.write_bytes(forged_jpeg(9000, 9000))
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("bomb/data.pkl", "w", force_zip64=True) as member:
            for _ in range(64):
                member.write(bytes(16 << 20))  # 1 GiB of zeros in a few megabytes
    deep, _ = bad_safetensors("config deeply nested", tiny_sr_weights, tmp_path)
    pickled, _ = bad_checkpoint("pickle calling eval", tiny_sr_weights, tmp_path, tiny_overrides)
    train = ["train", "--data", str(photo.parent), "--out-dir", str(tmp_path / "run"), "--no-progress"]
    commands = [
        (["restore", str(forged), "-o", str(tmp_path / "out"), "--task", "sr", "--weights", str(tiny_sr_weights)], 1),
        (["eval", str(photo.parent), "--weights", str(tiny_sr_weights), "--items", "1"], 2),
        (["info", str(bomb), str(deep), str(pickled)], 1),
        ([*train, "--set", 'model_overrides={"channels": 40000}'], 2),
        ([*train, "--batch-size", "100000"], 2),
        ([*train, "--init-weights", str(bomb)], 2),
    ]
    script = ("import json, resource, sys\n"
              "import cv2, torch, PIL.Image, edpn_core.training, edpn_core.evaluate\n"
              "from edpn_core.cli import main\n"
              "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
              "before = peak()\n"
              "codes = [main(argv) for argv, _ in json.loads(sys.argv[1])]\n"
              "print(json.dumps({'codes': codes, 'growth': peak() - before}))\n")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [code for _, code in commands], done.stderr
    assert result["growth"] < 1 << 30, result
    assert "Traceback" not in done.stderr and DEEP[:10] not in done.stderr


def test_a_reader_that_stops_early_gets_no_error_line(tmp_path):
    """`edpn info | head -0`: the pipe is closed under the command, which stops without an 'unexpected error'."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line
    done = subprocess.run([sys.executable, "-m", "edpn_core.cli", "info"], stdout=write_end, stderr=subprocess.PIPE,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    os.close(write_end)
    assert done.returncode == 141 and done.stderr.decode() == ""
