"""Files through the engine and the CLI: what a user sees in the output folder and in the exit code."""
import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, PngImagePlugin

from edpn_core import build_model, save_weights
from edpn_core.cli import main
from edpn_core.inference import precision as precision_module
from edpn_core.inference.batch import (
    BatchSettings,
    OutputsExist,
    collect_inputs,
    plan_batch,
    plan_jobs,
    read_header,
    restore_file,
    run_batch,
)
from edpn_core.inference.engine import CancelToken, Restorer, RunSettings
from edpn_core.inference.imageio import load_image


@pytest.fixture
def weights(tmp_path, tiny_overrides):
    torch.manual_seed(0)
    folder = tmp_path / "weights"
    return {task: save_weights(build_model("lite", task, **tiny_overrides), folder / f"{task}.safetensors", "lite")
            for task in ("sr", "deblock")}


def photo(h=24, w=32, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def exif_with_date() -> bytes:
    exif = Image.Exif()
    exif[0x0132] = "2024:05:06 07:08:09"
    exif[0x0112] = 1
    return exif.tobytes()


def test_metadata_alpha_and_input_survive_sr(tmp_path, weights):
    src = tmp_path / "in.png"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgba = np.dstack([photo(), np.linspace(0, 255, 24 * 32).reshape(24, 32).astype(np.uint8)])
    settings = PngImagePlugin.PngInfo()
    settings.add_text("parameters", "a cat\nSteps: 20, Seed: 968002204, Size: 32x24")
    Image.fromarray(rgba, "RGBA").save(src, exif=exif_with_date(), icc_profile=icc, pnginfo=settings)
    before = digest(src)
    out = restore_file(Restorer(weights["sr"]), src, tmp_path / "out" / "in.png", RunSettings(16))
    assert digest(src) == before
    with Image.open(out) as img:
        assert img.size == (128, 96) and img.mode == "RGBA"
        assert img.info.get("icc_profile") == icc
        assert img.text == {"parameters": "a cat\nSteps: 20, Seed: 968002204, Size: 32x24"}
        assert img.getexif()[0x0132] == "2024:05:06 07:08:09"
        alpha = np.asarray(img)[..., 3].astype(float)
    assert abs(alpha.mean() - rgba[..., 3].mean()) < 2


@pytest.mark.parametrize("task,ext", [("sr", ".png"), ("sr", ".jpg"), ("sr", ".tif"), ("deblock", ".png")])
def test_a_scan_prints_at_its_own_size_after_a_restore(tmp_path, weights, task, ext):
    """A 300 dpi scan of a 10 x 7.5 cm print, restored x4, must print at 10 x 7.5 cm again (1200 dpi), not 4 times
    larger at 300 dpi or at whatever a viewer assumes when the resolution is lost; deblocking keeps 300 dpi."""
    exif = Image.Exif()
    exif[0x011A], exif[0x011B], exif[0x0128] = 300, 300, 2  # XResolution, YResolution, inches
    src = tmp_path / f"scan{ext}"
    Image.fromarray(photo()).save(src, dpi=(300, 300), exif=exif.tobytes())
    out = restore_file(Restorer(weights[task]), src, tmp_path / "out" / src.name, RunSettings(16))
    expected = 1200 if task == "sr" else 300
    with Image.open(out) as img:
        assert [round(value) for value in img.info["dpi"]] == [expected, expected]
        assert img.getexif()[0x011A] == expected and img.getexif()[0x0128] == 2


def test_sixteen_bit_and_grey_stay_what_they_were(tmp_path, weights):
    import cv2

    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), (np.random.default_rng(1).random((20, 20, 3)) * 65535).astype(np.uint16))
    grey = tmp_path / "grey.png"
    Image.fromarray(photo()[..., 0], "L").save(grey)
    restorer, whole = Restorer(weights["deblock"]), RunSettings("whole")
    out_deep = load_image(restore_file(restorer, deep, tmp_path / "o" / "deep.png", whole))
    out_grey = load_image(restore_file(restorer, grey, tmp_path / "o" / "grey.png", whole))
    assert out_deep.bit_depth == 16 and (out_deep.height, out_deep.width) == (20, 20)
    assert out_grey.grey and out_grey.bit_depth == 8


def test_cancel_leaves_no_output_and_batch_goes_on_after_bad_files(tmp_path, weights):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photo(64, 64)).save(folder / "a.png")
    Image.fromarray(photo(16, 16, 2)).save(folder / "sub" / "b.jpg", quality=30)
    (folder / "broken.png").write_bytes(b"not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    jobs = plan_jobs(collect_inputs([folder], recursive=True), tmp_path / "out")
    assert sorted(str(j.dst.relative_to(tmp_path / "out")) for j in jobs) == [
        "a.png", "broken.png", "empty.png", "sub/b.png"]

    token = CancelToken()
    restorer, settings = Restorer(weights["deblock"], overlap=4), BatchSettings(run=RunSettings(16))
    cancelled = run_batch(restorer, jobs, settings, progress=lambda p: token.cancel(), cancel=token)
    assert cancelled.cancelled and cancelled.restored == []
    assert not (tmp_path / "out").exists() or not any(p.is_file() for p in (tmp_path / "out").rglob("*"))

    failed_live = []
    report = run_batch(restorer, jobs, settings, on_failure=lambda src, reason: failed_live.append((src, reason)))
    assert failed_live == report.failed
    assert sorted(p.name for p in report.restored) == ["a.png", "b.png"]
    assert sorted(src.name for src, _ in report.failed) == ["broken.png", "empty.jpg"]
    assert all("\n" not in reason and src.name in reason for src, reason in report.failed)


def test_restore_says_before_starting_what_the_chosen_format_will_drop(tmp_path, weights, capsys):
    """The same counts the app's batch window shows: a user converting generated PNGs to JPEG hears that their
    settings and transparency will not follow, before the work, not from a viewer afterwards."""
    folder = tmp_path / "in"
    folder.mkdir()
    settings = PngImagePlugin.PngInfo()
    settings.add_text("parameters", "a cat")
    Image.fromarray(photo()).save(folder / "generated.png", pnginfo=settings)
    Image.fromarray(np.dstack([photo(), np.full((24, 32), 128, np.uint8)])).save(folder / "logo.png")
    Image.fromarray(photo()).save(folder / "plain.png")
    command = ["restore", str(folder), "-o", str(tmp_path / "out"), "--task", "deblock", "--weights",
               str(weights["deblock"]), "--tile", "whole"]
    assert main([*command, "--format", "jpg"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert notes == ["note: 1 photo(s) have transparency, which JPEG cannot store: it will be dropped. Choose PNG, "
                     "WebP or TIFF to keep it.",
                     "note: 1 photo(s) carry text that JPEG cannot hold: left out of their restored files."]
    assert main([*command, "--overwrite"]) == 0  # PNG keeps both
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]


def test_the_header_peek_expects_transparency_exactly_where_the_restore_keeps_it(tmp_path):
    """The batch's transparency warning comes from the header; it must name the photos whose restored pixels
    would have an alpha channel, no more (a 16-bit grey PNG's tRNS is not decoded) and no fewer (a palette's)."""
    rgb = photo()
    grey = rgb[..., 0]
    palette = Image.fromarray(rgb).convert("P")
    files = {
        "rgba.png": Image.fromarray(np.dstack([rgb, grey])),
        "grey-alpha.png": Image.fromarray(np.dstack([grey, grey])).convert("LA"),
        "plain.png": Image.fromarray(rgb),
        "plain.jpg": Image.fromarray(rgb),
        "grey16.png": Image.fromarray(grey.astype(np.uint16) * 257),
    }
    for name, image in files.items():
        image.save(tmp_path / name)
    palette.save(tmp_path / "palette-keyed.png", transparency=0)
    Image.fromarray(rgb).save(tmp_path / "rgb-keyed.png", transparency=tuple(int(v) for v in rgb[0, 0]))
    files["grey16.png"].save(tmp_path / "grey16-keyed.png", transparency=257 * int(grey[0, 0]))
    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 8
    restored = {name: load_image(tmp_path / name).alpha is not None for name in names}
    assert {name for name, alpha in restored.items() if alpha} == {"rgba.png", "grey-alpha.png", "palette-keyed.png",
                                                                  "rgb-keyed.png"}
    assert {name: read_header(tmp_path / name).alpha for name in names} == restored


def test_an_output_too_large_for_its_format_fails_before_the_network_runs(tmp_path, weights):
    src = tmp_path / "panorama.png"
    Image.fromarray(photo(4, 4100)).save(src)
    jobs = plan_jobs(collect_inputs([src]), tmp_path / "out", "webp")
    tiles = []
    report = run_batch(Restorer(weights["sr"]), jobs, progress=tiles.append)
    assert [src for src, _ in report.failed] == [src] and tiles == []
    assert "16400 x 16 px is more than WebP holds (16383 px a side); save as PNG or TIFF" in report.failed[0][1]
    assert not (tmp_path / "out").exists()
    assert load_image(restore_file(Restorer(weights["sr"]), src, tmp_path / "out" / "panorama.png",
                                   RunSettings(64))).width == 16400


def test_a_rerun_into_an_output_folder_inside_the_inputs_leaves_its_results_out(tmp_path):
    photos = tmp_path / "photos"
    (photos / "restored" / "sub").mkdir(parents=True)
    for path in (photos / "a.png", photos / "restored" / "a.png", photos / "restored" / "sub" / "b.png"):
        Image.fromarray(photo()).save(path)
    rerun = plan_batch([photos], photos / "restored", BatchSettings(recursive=True, existing="skip"))
    assert [(job.src, job.dst) for job in rerun] == [(photos / "a.png", photos / "restored" / "a.png")]
    beside = plan_batch([photos], photos, BatchSettings("jpg", recursive=True))  # the scanned folder itself
    assert len(beside) == 3


def test_a_photo_named_twice_is_restored_once(tmp_path):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    jobs = plan_batch([tmp_path, tmp_path / "a.png", tmp_path / "." / "a.png"], tmp_path / "out", BatchSettings())
    assert [(job.src, job.dst) for job in jobs] == [(tmp_path / "a.png", tmp_path / "out" / "a.png")]
    Image.fromarray(photo()).save(tmp_path / "a.jpg")  # another photo of the same name: one output each is not possible
    with pytest.raises(ValueError, match=r"a.jpg and .*a.png would both be written to .*a.png; rename one of them"):
        plan_batch([tmp_path], tmp_path / "out", BatchSettings())


def test_plan_refuses_to_write_over_inputs(tmp_path):
    Image.fromarray(photo()).save(tmp_path / "x.png")
    with pytest.raises(ValueError, match="overwrite an input"):
        plan_jobs(collect_inputs([tmp_path]), tmp_path)
    with pytest.raises(ValueError, match="unsupported output format"):
        plan_jobs(collect_inputs([tmp_path]), tmp_path / "o", "gif")


def test_a_batch_plan_refuses_nothing_to_do_and_outputs_already_there(tmp_path):
    """The plan `edpn restore` and the app's batch dialog share: refused before any weights load or file is
    written, each case in one line the caller can extend with its own advice."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images found in .*empty"):
        plan_batch([empty], tmp_path / "out", BatchSettings())
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo()).save(folder / "x.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.png").write_bytes(b"an earlier result")
    with pytest.raises(OutputsExist, match="1 output file\\(s\\) exist already") as refused:
        plan_batch([folder], tmp_path / "out", BatchSettings())
    assert refused.value.paths == [tmp_path / "out" / "x.png"]
    for existing in ("skip", "overwrite"):
        jobs = plan_batch([folder], tmp_path / "out", BatchSettings(existing=existing))
        assert [job.dst for job in jobs] == refused.value.paths
    with pytest.raises(ValueError, match="existing outputs must be one of"):
        BatchSettings(existing="replace")
    assert (tmp_path / "out" / "x.png").read_bytes() == b"an earlier result"


def test_cli_exit_codes_and_outputs(tmp_path, weights, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo()).save(folder / "good.jpg", quality=40)
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    args = ["restore", str(folder), "-o", str(out), "--task", "sr", "--weights", str(weights["sr"]), "--tile", "whole"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "failed: " in err and "bad.png" in err and "Traceback" not in err
    with Image.open(out / "good.png") as img:
        assert img.size == (128, 96)
    assert main(args) == 2  # outputs exist: refuse rather than overwrite
    err = capsys.readouterr().err
    assert "1 output file(s) exist already" in err and "--skip-existing or --overwrite" in err
    assert main(args + ["--skip-existing"]) == 1
    assert main(["restore", str(folder), "-o", str(out), "--task", "deblock", "--weights", str(weights["sr"])]) == 2
    assert "trained for 'sr'" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "nope.png"), "-o", str(out), "--task", "sr"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["restore", str(folder), "-o", str(out), "--task", "denoise"])
    assert exc.value.code == 2


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_info_says_which_arithmetic_the_cpu_path_takes(monkeypatch, capsys, fast_bf16):
    monkeypatch.setattr(precision_module, "cpu_has_fast_bf16", lambda: fast_bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["info"]) == 0
    device_line = capsys.readouterr().out.splitlines()[0]
    assert "automatic device: CPU" in device_line
    assert ("bf16 autocast" if fast_bf16 else "fp32 (no bf16 in the CPU's hardware)") in device_line


def test_cli_info_and_eval(tmp_path, weights, capsys):
    assert main(["info", str(weights["deblock"])]) == 0
    assert "task deblock" in capsys.readouterr().out
    Image.fromarray(photo()).save(tmp_path / "dated.jpg", exif=exif_with_date())
    Image.fromarray(photo()).save(tmp_path / "plain.png")
    settings = PngImagePlugin.PngInfo()
    settings.add_text("parameters", "a cat")
    Image.fromarray(photo()).save(tmp_path / "generated.png", pnginfo=settings, dpi=(300, 300))
    caption = b"\x1c\x02\x78\x00\x04Anna"  # IPTC 2:120, as in a JPEG's APP13
    app13 = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00" + len(caption).to_bytes(4, "big") + caption + b"\x00"
    Image.fromarray(photo()).save(tmp_path / "noted.jpg", comment=b"for Anna",
                                  extra=b"\xff\xed" + (len(app13) + 2).to_bytes(2, "big") + app13)
    assert main(["info", *(str(tmp_path / name) for name in ("dated.jpg", "plain.png", "generated.png",
                                                               "noted.jpg"))]) == 0
    dated, plain, generated, noted = capsys.readouterr().out.splitlines()
    assert dated.endswith("JPEG 32x24, 8-bit, mode RGB, estimated JPEG quality 75; metadata restores keep: EXIF")
    assert plain.endswith("PNG 32x24, 8-bit, mode RGB; metadata restores keep: none")
    assert generated.endswith("mode RGB, 300 dpi; metadata restores keep: text (parameters; kept in PNG outputs only)")
    assert noted.endswith("metadata restores keep: IPTC (in JPEG and TIFF outputs), text (Comment; kept in PNG "
                          "outputs, the Comment in JPEG ones too)")
    sharp = tmp_path / "sharp"
    sharp.mkdir()
    yy, xx = np.mgrid[0:128, 0:128] / 128
    img = (np.stack([np.sin(8 * xx + c) * np.cos(5 * yy) for c in range(3)], -1) * 0.4 + 0.5) * 255
    Image.fromarray(img.round().astype(np.uint8)).save(sharp / "s.png")
    assert main(["eval", str(sharp), "--weights", str(weights["sr"]), "--crop", "64", "--items", "1",
                 "--families", "none", "motion", "--ensemble", "--json", str(tmp_path / "eval.json")]) == 0
    table = capsys.readouterr().out
    assert "EDPN PSNR Y" in table and "bicubic PSNR Y" in table and "self-ensemble x4" in table
    assert "| family motion | 4 |" in table and "| input jpeg70-90 | 6 |" in table
    assert json.loads((tmp_path / "eval.json").read_text())["groups"]["all"]["items"] == 8
    assert main(["eval", str(sharp), "--weights", str(weights["sr"]), "--task", "deblock", "--items", "1"]) == 2
    assert "trained for 'sr', not 'deblock'" in capsys.readouterr().err
