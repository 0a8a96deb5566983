"""`edpn eval`: detailed crops, a breakdown by blur family and input format, scores of the images as saved."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from edpn_core import build_model
from edpn_core.evaluate import FAMILY_BLURS, detail_boxes, eval_items, evaluate, format_photo_table, format_table, score
from edpn_core.inference.engine import Restorer
from edpn_core.training.degradations import imresize


def textured_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / 16
    img = np.stack([np.sin(3 * xx + c) * np.cos(2 * yy) for c in range(3)], -1) * 0.35 + 0.5
    return (np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(textured_photo(96, 128)).save(folder / "a.png")
    Image.fromarray(textured_photo(80, 80, seed=1)).save(folder / "b.png")
    return folder


def test_detail_crops_avoid_flat_sky():
    photo = textured_photo(128, 256)
    photo[:, :128] = 200  # the left half is flat
    boxes = detail_boxes(photo, 64, 2)
    assert len(boxes) == 2 and all(left >= 128 for _, left in boxes)
    assert abs(boxes[0][0] - boxes[1][0]) >= 64 or abs(boxes[0][1] - boxes[1][1]) >= 64  # no overlap
    assert detail_boxes(photo[:32], 64, 2) == []  # smaller than a crop


def test_every_crop_is_degraded_once_per_family_and_input_format(photos):
    items = eval_items(photos, "sr", crop=64, crops_per_photo=1)
    conditions = {(i.condition.family, i.condition.input_format) for i in items}
    assert conditions == {(f, fmt) for f in FAMILY_BLURS for fmt in ("png", "jpeg90", "jpeg80", "jpeg70")}
    assert len(items) == 2 * len(conditions)
    assert all(i.lq.shape == (16, 16, 3) and i.gt.shape == (64, 64, 3) for i in items)
    unblurred = next(i for i in items if i.condition.family == "none" and i.condition.input_format == "png")
    assert np.abs(unblurred.lq - np.clip(imresize(unblurred.gt, 0.25), 0, 1)).max() <= 0.5 / 255 + 0.02
    blurred = [i.lq for i in items if i.name == unblurred.name and i.condition.input_format == "png"]
    assert len({arr.tobytes() for arr in blurred}) == len(FAMILY_BLURS)


def test_deblock_inputs_are_jpegs_and_bad_formats_are_refused(photos):
    items = eval_items(photos, "deblock", crop=48, crops_per_photo=1, families=("none",), max_crops=1)
    assert [i.condition.input_format for i in items] == ["jpeg20", "jpeg40", "jpeg60", "jpeg90"]
    with pytest.raises(ValueError, match="jpeg1..jpeg100"):
        eval_items(photos, "deblock", crop=48, input_formats=("png",))
    with pytest.raises(ValueError, match="jpeg1..jpeg100"):
        eval_items(photos, "sr", crop=64, input_formats=("jpeg101",))


def _y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma on 0..255, written out independently of edpn_core.metrics.psnr_ssim."""
    return 16 + img[..., 0] * 65.481 + img[..., 1] * 128.553 + img[..., 2] * 24.966


def tiny_run(photos, overrides, task, **conditions):
    """A tiny network of the task scored on the photos' crops under the conditions: (restorer, items, report)."""
    torch.manual_seed(0)
    restorer = Restorer(models=[build_model("lite", task, **overrides)], device="cpu")
    items = eval_items(photos, task, **conditions)
    return restorer, items, evaluate(restorer, items, tile="whole")


def test_scores_are_of_8_bit_outputs_and_match_an_independent_computation(photos, tiny_overrides):
    _, items, report = tiny_run(photos, tiny_overrides, "sr", crop=64, crops_per_photo=1,
                                families=("gaussian", "motion"), input_formats=("png", "jpeg80"))
    assert report.methods == ["EDPN", "bicubic"]
    expected = []
    for item in items:
        saved = np.clip(np.rint(np.clip(imresize(item.lq, 4), 0, 1) * 255), 0, 255) / 255
        expected.append(peak_signal_noise_ratio(_y(item.gt)[4:-4, 4:-4], _y(saved)[4:-4, 4:-4], data_range=255))
    assert report.groups["all"]["scores"]["bicubic"]["psnr_y"] == pytest.approx(np.mean(expected), abs=1e-6)
    assert report.groups["all"]["items"] == len(items) == 8
    assert {"family gaussian", "input jpeg80", "input jpeg70-90", "motion / png"} <= set(report.groups)
    edpn = report.groups["family motion"]["scores"]["EDPN"]["psnr_y"]
    base = report.groups["family motion"]["scores"]["bicubic"]["psnr_y"]
    assert report.gain("family motion") == pytest.approx(edpn - base)
    table = format_table(report)
    assert "| all | 8 |" in table and "EDPN gain over bicubic" in table


def test_other_weights_and_peers_are_scored_in_the_same_run(photos, tiny_overrides):
    torch.manual_seed(0)
    ours = Restorer(models=[build_model("lite", "deblock", **tiny_overrides)], device="cpu")
    other = Restorer(models=[build_model("lite", "deblock", **tiny_overrides)], device="cpu")
    items = eval_items(photos, "deblock", crop=48, crops_per_photo=1, families=("none",), max_crops=1)
    report = evaluate(ours, items, tile="whole", ensemble=True, others={"old.safetensors": other},
                      peers={"identity": lambda lq: lq})
    assert report.methods == ["EDPN", "EDPN + self-ensemble x4", "old.safetensors", "identity", "degraded input"]
    assert report.gain("all", method="identity") == pytest.approx(0.0, abs=1e-9)
    assert "EDPN - old.safetensors" in format_table(report)


def test_the_breakdown_per_photo_shows_which_photo_a_loss_comes_from(photos, tiny_overrides):
    restorer, items, report = tiny_run(photos, tiny_overrides, "deblock", crop=48, crops_per_photo=2,
                                       families=("none", "motion"), input_formats=("jpeg20", "jpeg90"))
    edpn = {id(item): score(restorer.restore_array(item.lq), item.gt, 1)["psnr_y"] for item in items}
    base = {id(item): score(item.lq, item.gt, 1)["psnr_y"] for item in items}
    for photo in ("a", "b"):
        mine = [item for item in items if item.name.startswith(photo + "@")]
        for group in ("all", "family none", "family motion"):
            chosen = [i for i in mine if group == "all" or group == f"family {i.condition.family}"]
            scores = report.photos[photo][group]
            assert scores["EDPN"] == pytest.approx(np.mean([edpn[id(i)] for i in chosen]))
            assert scores["degraded input"] == pytest.approx(np.mean([base[id(i)] for i in chosen]))
    table = format_photo_table(report).splitlines()
    assert table[1] == "| photo | all | family none | family motion |"
    gains = {p: g["all"]["EDPN"] - g["all"]["degraded input"] for p, g in report.photos.items()}
    assert table[3].startswith(f"| {min(gains, key=gains.get)} | {min(gains.values()):+.2f} |")  # worst first


def test_eval_reads_photos_as_restore_does_upright_and_checked(photos, tmp_path, tiny_sr_weights, capsys):
    """A sideways phone photo is turned upright by its EXIF orientation; a bad one is one line, exit 2."""
    from test_imageio import forged_jpeg

    from edpn_core.cli import main
    from edpn_core.training.data import read_image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(textured_photo(40, 64)).save(tmp_path / "sideways.jpg", exif=exif.tobytes(), quality=95)
    assert read_image(tmp_path / "sideways.jpg").shape == (64, 40, 3)

    bad_photos = {"empty.png": b"", "text.jpg": b"just some words\n" * 20,
                  "truncated.png": (photos / "a.png").read_bytes()[:300], "forged.jpg": forged_jpeg(9000, 9000)}
    for name, data in bad_photos.items():
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_bytes(data)
        assert main(["eval", str(folder), "--weights", str(tiny_sr_weights), "--crop", "64", "--items", "1"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert str(folder / name) in line and "Traceback" not in line, line
