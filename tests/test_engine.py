"""The one restoration path: seams, ensembles, progress, cancel and out-of-memory recovery."""
import numpy as np
import pytest
import torch

from edpn_core import build_model
from edpn_core.config import Task
from edpn_core.inference.engine import Cancelled, CancelToken, Restorer, RunSettings, parse_tile
from edpn_core.inference.tiling import balanced_tile, feather_window, tile_starts


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth shapes plus fine texture: content a network reacts to, unlike flat noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], -1) * 0.3 + 0.5
    return np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1).astype(np.float32)


def trained_like(task: Task, overrides: dict, seed: int = 0) -> torch.nn.Module:
    """Weights at full scale everywhere (offsets and attention included), as after training."""
    torch.manual_seed(seed)
    model = build_model("lite", task, **overrides)
    for name, p in model.named_parameters():
        if p.dim() == 4:
            fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            p.data.normal_(0, fan_in ** -0.5 * (0.3 if "offset_mask" in name else 1.0))
        else:
            p.data.normal_(0, 0.02)
    return model.eval()


@pytest.mark.parametrize("task", ["sr", "deblock"])
def test_tiled_output_matches_whole_image(task, tiny_overrides):
    model = trained_like(task, tiny_overrides)
    img = natural_image(90, 130)
    whole = Restorer(models=[model]).restore_array(img, RunSettings("whole"))
    tiled = Restorer(models=[model], overlap=16).restore_array(img, RunSettings(48))
    assert tiled.shape == whole.shape == (90 * model.cfg.scale, 130 * model.cfg.scale, 3)
    assert psnr(tiled, whole) >= 45


def test_tiles_cover_the_image_with_overlap():
    for length, tile, overlap in [(100, 48, 16), (48, 48, 16), (30, 48, 16), (1000, 256, 24)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + min(tile, length) == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_feather_windows_of_neighbours_sum_to_one():
    ramp = feather_window(32, 0, 16)[-16:] + feather_window(32, 16, 0)[:16]
    assert np.allclose(ramp, 1.0, atol=1e-6)


def test_self_ensemble_averages_rotations(tiny_overrides):
    model = trained_like("deblock", tiny_overrides)
    img = natural_image(20, 28)
    restorer = Restorer(models=[model])
    whole = RunSettings("whole")
    plain = restorer.restore_array(img, whole)
    expected = np.mean([np.rot90(restorer.restore_array(np.ascontiguousarray(np.rot90(img, k)), whole), -k)
                        for k in range(4)], axis=0)
    x4 = restorer.restore_array(img, RunSettings("whole", "x4"))
    assert np.allclose(x4, expected, atol=1e-5)
    x8 = restorer.restore_array(img, RunSettings("whole", "x8"))
    assert x8.shape == img.shape and not np.allclose(x8, x4)
    assert np.array_equal(restorer.restore_array(img, whole), plain)  # no ensemble left behind


def test_model_ensemble_averages_models(tiny_overrides):
    a, b = trained_like("sr", tiny_overrides, 1), trained_like("sr", tiny_overrides, 2)
    img = natural_image(12, 16)
    whole = RunSettings("whole")
    both = Restorer(models=[a, b]).restore_array(img, whole)
    single = [Restorer(models=[m]).restore_array(img, whole) for m in (a, b)]
    assert np.allclose(both, (single[0] + single[1]) / 2, atol=1e-5)


def test_model_ensemble_refuses_mixed_tasks(tiny_overrides):
    with pytest.raises(ValueError, match="one task"):
        Restorer(models=[trained_like("sr", tiny_overrides), trained_like("deblock", tiny_overrides)])


def test_weights_for_the_other_task_are_refused(tiny_overrides):
    with pytest.raises(ValueError, match="trained for 'deblock', not 'sr'"):
        Restorer(models=[trained_like("deblock", tiny_overrides)], task="sr")
    assert Restorer(models=[trained_like("sr", tiny_overrides)], task="sr").scale == 4


def test_progress_reports_every_tile_and_ends_at_one(tiny_overrides):
    seen = []
    Restorer(models=[trained_like("deblock", tiny_overrides)], overlap=8).restore_array(
        natural_image(64, 80), RunSettings(32), progress=seen.append)
    assert [p.tiles_done for p in seen] == list(range(1, seen[0].tiles_total + 1))
    assert seen[-1].fraction == 1.0 and seen[-1].eta_s == 0
    assert all(a.fraction < b.fraction for a, b in zip(seen, seen[1:]))


def test_cancel_stops_between_tiles(tiny_overrides):
    token = CancelToken()
    seen = []

    def on_progress(p):
        seen.append(p)
        token.cancel()

    with pytest.raises(Cancelled):
        Restorer(models=[trained_like("deblock", tiny_overrides)], overlap=8).restore_array(
            natural_image(64, 96), RunSettings(32), progress=on_progress, cancel=token)
    assert len(seen) == 1 and seen[0].tiles_total > 1


def pretend_gpu(restorer: Restorer, monkeypatch, fits) -> list[tuple[str, int]]:
    """Make `restorer` believe it is on a GPU whose memory holds only tiles for which `fits(side)` holds; the GPU's
    passes are computed on the CPU. Returns the (device type, tile side) of every pass, as it runs."""
    restorer.device = torch.device("cuda")
    on_cpu = Restorer(models=restorer.models, device="cpu")
    real_run = Restorer._run_model
    passes = []

    def run_model(self, m, tile):
        passes.append((self.device.type, tile.shape[-1]))
        if self.device.type == "cuda" and not fits(tile.shape[-1]):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_run(on_cpu if self.device.type == "cuda" else self, m, tile)

    monkeypatch.setattr(Restorer, "_run_model", run_model)
    return passes


def test_out_of_memory_halves_the_tile_then_falls_back_to_cpu(tiny_overrides, monkeypatch):
    model = trained_like("deblock", tiny_overrides)
    img = natural_image(70, 70)
    expected = Restorer(models=[model]).restore_array(img, RunSettings("whole"))
    restorer = Restorer(models=[model], overlap=8)
    passes = pretend_gpu(restorer, monkeypatch, fits=lambda side: False)
    reports = []
    out = restorer.restore_array(img, RunSettings(64), progress=reports.append)
    tried = [side for device, side in passes if device == "cuda"]
    assert len(tried) == 2 and tried[0] <= 64 and tried[1] <= 32  # tiles balanced within the asked size
    assert any("retrying with 32px tiles" in p.message for p in reports)
    fallbacks = [p.fallback for p in reports if p.fallback is not None]
    assert len(fallbacks) == 1 and "using the CPU" in fallbacks[0].reason and "CPU" in fallbacks[0].device_name
    assert psnr(out, expected) >= 45


def test_a_cpu_fallback_ends_with_its_run(tiny_overrides, monkeypatch):
    """The app keeps its restorer between photos: after one photo too large for the GPU, the next photo runs on the
    GPU again and reports no fallback."""
    restorer = Restorer(models=[trained_like("deblock", tiny_overrides)], overlap=8)
    passes = pretend_gpu(restorer, monkeypatch, fits=lambda side: side < 32)
    first = []
    restorer.restore_array(natural_image(70, 70), RunSettings(64), progress=first.append)
    assert any(p.fallback is not None for p in first)
    passes.clear()
    second = []
    restorer.restore_array(natural_image(24, 24), RunSettings(64), progress=second.append)
    assert {device for device, _ in passes} == {"cuda"}
    assert all(p.fallback is None for p in second)


def test_region_preview_matches_full_restore(tiny_overrides):
    model = trained_like("sr", tiny_overrides)
    img = natural_image(64, 64)
    restorer, whole = Restorer(models=[model]), RunSettings("whole")
    full = restorer.restore_array(img, whole)
    region = restorer.restore_region(img, (20, 10, 16, 24), whole, context=16)
    assert region.shape == (24 * 4, 16 * 4, 3)
    assert psnr(region, full[40:136, 80:144]) >= 45
    with pytest.raises(ValueError, match="not inside"):
        restorer.restore_region(img, (60, 0, 16, 16))


def test_bad_options_are_refused(tiny_overrides, monkeypatch):
    model = trained_like("sr", tiny_overrides)
    with pytest.raises(ValueError, match="ensemble"):
        RunSettings(ensemble="x16")
    for tile in (0, -64, "0", None):
        with pytest.raises(ValueError, match="tile"):
            RunSettings(tile)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, wherever this runs
    with pytest.raises(ValueError, match="CUDA was requested but no CUDA GPU is available"):
        Restorer(models=[model], device="cuda")


@pytest.mark.parametrize("length,tile", [(384, 360), (512, 360), (1024, 268), (100, 48), (4000, 188), (96, 96)])
def test_balanced_tiles_need_no_more_tiles_and_recompute_less(length, tile):

    side = balanced_tile(length, tile, 24, 4)
    assert side <= tile and side % 4 == 0
    assert len(tile_starts(length, side, 24, 4)) == len(tile_starts(length, tile, 24, 4))
    if length > tile:
        assert side * len(tile_starts(length, side, 24, 4)) <= tile * len(tile_starts(length, tile, 24, 4))


def test_a_tile_is_auto_whole_or_a_size_never_a_zero():
    """0 meant the whole image to the CLI and Auto to the app: now each has its own word."""
    assert [parse_tile(text) for text in ("auto", " Whole ", "64")] == ["auto", "whole", 64]
    for text in ("0", "16", "big", ""):
        with pytest.raises(ValueError, match="'auto', 'whole' or a size of at least 32"):
            parse_tile(text)
