"""Training: the loss goes down, resume is exact, exports describe themselves, configs are checked."""
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edpn_core.engine import Restorer
from edpn_core.evaluate import eval_items, evaluate
from edpn_core.model_io import load_model, read_weights_info
from edpn_core.train import IterationSampler, TrainConfig, Trainer


@pytest.fixture
def photo_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    yy, xx = np.mgrid[0:96, 0:96] / 96
    for i in range(3):
        img = np.stack([np.sin((5 + i) * xx + c) * np.cos(3 * yy) for c in range(3)], -1) * 0.4 + 0.5
        img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def tiny_config(photo_dir, tmp_path, tiny_overrides, **changes) -> TrainConfig:
    base = dict(preset="lite", task="sr", model_overrides=tiny_overrides, data=str(photo_dir), lq_patch=8,
                batch_size=2, iterations=4, checkpoint_every=2, val_every=1000, out_dir=str(tmp_path / "run"),
                tensorboard=False)
    return TrainConfig().updated(**{**base, **changes})


def test_one_step_lowers_the_loss_on_a_fixed_batch(photo_dir, tmp_path, tiny_overrides):
    trainer = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides, lr=1e-3))
    batch = next(trainer.batches(__import__("edpn_core.train", fromlist=["x"]).build_train_dataset(trainer.cfg)))
    with torch.no_grad():
        before = float(trainer.loss_fn(trainer.model(batch["lq"]), batch["gt"])[0])
    trainer.step(batch)
    with torch.no_grad():
        after = float(trainer.loss_fn(trainer.model(batch["lq"]), batch["gt"])[0])
    assert after < before


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(photo_dir, tmp_path, tiny_overrides):
    straight = Trainer(tiny_config(photo_dir, tmp_path / "a", tiny_overrides))
    straight.fit(show_progress=False)

    first = Trainer(tiny_config(photo_dir, tmp_path / "b", tiny_overrides))
    first.fit(until=2, show_progress=False)
    resumed = Trainer(tiny_config(photo_dir, tmp_path / "b", tiny_overrides, seed=99))
    resumed.cfg = first.cfg  # the checkpoint, not the fresh seed, must decide everything
    resumed.load_checkpoint(first.checkpoint_path)
    assert resumed.iteration == 2
    resumed.fit(show_progress=False)

    assert resumed.iteration == straight.iteration == 4
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.scheduler.state_dict() == straight.scheduler.state_dict()


def test_export_writes_weights_the_app_can_load(photo_dir, tmp_path, tiny_overrides):
    trainer = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides, iterations=1))
    trainer.fit(show_progress=False)
    path = trainer.export(tmp_path / "w.safetensors", training_data="test photos")
    info = read_weights_info(path)
    assert (info.task, info.scale, info.metadata["iterations"], info.metadata["training_data"]) == (
        "sr", 4, "1", "test photos")
    model, _ = load_model(path)
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    checkpoint_model, checkpoint_info = load_model(trainer.checkpoint_path)
    assert checkpoint_info.task == "sr" and checkpoint_model.cfg == model.cfg


def test_fine_tuning_starts_from_shipped_style_weights(photo_dir, tmp_path, tiny_overrides):
    trained = Trainer(tiny_config(photo_dir, tmp_path / "a", tiny_overrides, iterations=2))
    trained.fit(show_progress=False)
    weights = trained.export(tmp_path / "w.safetensors", half=False)
    tuned = Trainer(tiny_config(photo_dir, tmp_path / "b", tiny_overrides, init_weights=str(weights)))
    assert tuned.iteration == 0
    for key, value in trained.model.state_dict().items():
        assert torch.equal(value, tuned.model.state_dict()[key]), key
    tuned.fit(show_progress=False)
    meta = read_weights_info(tuned.export(tmp_path / "t.safetensors")).metadata
    assert (meta["initialised_from"], meta["iterations_before"], meta["iterations"]) == ("w.safetensors", "2", "4")
    with pytest.raises(ValueError, match="task 'sr' \\(want 'deblock'\\)"):
        Trainer(tiny_config(photo_dir, tmp_path / "c", tiny_overrides, task="deblock", init_weights=str(weights)))


def test_sampler_restarts_where_it_stopped():
    full = list(itertools.islice(IterationSampler(7, seed=3), 20))
    assert sorted(full[:7]) == list(range(7))
    assert list(itertools.islice(IterationSampler(7, seed=3, start=9), 11)) == full[9:]


def test_config_file_and_unknown_settings(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('preset = "paper"\ntask = "deblock"\nlr = 5e-5\nbetas = [0.9, 0.99]\n')
    cfg = TrainConfig.load(path)
    assert (cfg.preset, cfg.task, cfg.lr, cfg.betas, cfg.batch_size) == ("paper", "deblock", 5e-5, (0.9, 0.99), 4)
    assert (cfg.lr_decay, cfg.lr_decay_every, cfg.ssim_weight, cfg.charbonnier_eps) == (0.8, 100_000, 0.1, 1e-3)
    with pytest.raises(ValueError, match="unknown training settings"):
        cfg.updated(learning_rate=1)


def test_degradation_settings_change_the_task_mix(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('task = "sr"\n[degradation]\njpeg_prob = 1.0\njpeg_quality = [70, 90]\n')
    mix = TrainConfig.load(path).degradation_config()
    assert (mix.jpeg_prob, mix.jpeg_quality, mix.noise_prob) == (1.0, (70, 90), 0.2)
    with pytest.raises(ValueError, match="unknown degradation settings"):
        TrainConfig(degradation={"jpg_prob": 1}).degradation_config()


def test_shipping_a_checkpoint_records_the_scores_of_the_shipped_file(photo_dir, tmp_path, tiny_overrides):
    trainer = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides, iterations=1))
    trainer.fit(show_progress=False)
    out, scores = tmp_path / "ship.safetensors", tmp_path / "eval.json"
    tool = Path(__file__).parents[1] / "tools" / "ship_weights.py"
    subprocess.run([sys.executable, str(tool), str(trainer.checkpoint_path), str(out), "--val", str(photo_dir),
                    "--crop", "64", "--items", "1", "--training-data", "test photos", "--recipe",
                    '{"lr": 1e-4}', "--meta", "note=tiny", "--eval-json", str(scores)], check=True, capture_output=True)
    meta = read_weights_info(out).metadata
    assert (meta["iterations"], meta["training_data"], meta["note"]) == ("1", "test photos", "tiny")
    assert json.loads(meta["recipe"]) == {"lr": 1e-4}
    groups = json.loads(meta["metrics"])["groups"]
    assert {"all", "input png", "input jpeg70-90", "family shake"} <= set(groups)
    methods = list(groups["all"]["scores"])
    assert methods[:2] == ["EDPN", "EDPN + self-ensemble x4"] and methods[-1] == "bicubic"
    assert groups["all"] == json.loads(scores.read_text())["groups"]["all"]
    model, _ = load_model(out)
    rescored = evaluate(Restorer(models=[model], device="cpu"), eval_items(photo_dir, "sr", crop=64, max_crops=1))
    assert rescored.groups["all"]["scores"]["EDPN"]["psnr_y"] == pytest.approx(
        groups["all"]["scores"]["EDPN"]["psnr_y"], abs=1e-6)
