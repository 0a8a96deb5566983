"""Training: the loss goes down, resume is exact, exports describe themselves, configs are checked."""
import dataclasses
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edpn_core.cli import main as edpn
from edpn_core.evaluate import eval_items, evaluate
from edpn_core.inference import precision as precision_module
from edpn_core.inference.engine import Restorer
from edpn_core.model_io import load_model, read_weights_info
from edpn_core.training.checkpoint import read_checkpoint
from edpn_core.training.config import TrainConfig
from edpn_core.training.data import PairedFolderDataset
from edpn_core.training.train import IterationSampler, Trainer, TrainingDiverged, build_train_dataset
from edpn_core.training.validation import build_val_items, validate

REPO = Path(__file__).parents[1]


@pytest.fixture
def select_dir(photo_dir, tmp_path):
    """Photos that pick checkpoints, apart from the training folder (the same pictures do for these tests)."""
    return Path(shutil.copytree(photo_dir, tmp_path / "select"))


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
                tensorboard=False, warmup_iterations=0)
    return TrainConfig().updated(**{**base, **changes})


def test_one_step_lowers_the_loss_on_a_fixed_batch(photo_dir, tmp_path, tiny_overrides):
    trainer = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides, lr=1e-3))
    batch = next(trainer.batches(build_train_dataset(trainer.cfg)))
    with torch.no_grad():
        before = float(trainer.loss_fn(trainer.model(batch["lq"]), batch["gt"])[0])
    trainer.step(batch)
    with torch.no_grad():
        after = float(trainer.loss_fn(trainer.model(batch["lq"]), batch["gt"])[0])
    assert after < before


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_cpu_training_takes_bf16_and_channels_last_only_where_the_cpu_computes_bf16(photo_dir, tmp_path,
                                                                                     tiny_overrides, monkeypatch,
                                                                                     fast_bf16):
    """Measured: channels-last speeds oneDNN's bf16 kernels but slows fp32 training (docs/BENCHMARKS.md)."""
    monkeypatch.setattr(precision_module, "cpu_has_fast_bf16", lambda: fast_bf16)
    trainer = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides), device=torch.device("cpu"))
    convs = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert trainer.bf16 is fast_bf16
    # 1x1 kernels are left out: their weights are contiguous in both layouts at once.
    assert all(w.is_contiguous(memory_format=torch.channels_last) is fast_bf16 for w in convs if w.shape[-1] > 1)
    logs = trainer.step(next(trainer.batches(build_train_dataset(trainer.cfg))))
    assert np.isfinite(logs["loss"])


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(photo_dir, tmp_path, tiny_overrides):
    cfg = dict(ema_decay=0.5, warmup_iterations=2)
    straight = Trainer(tiny_config(photo_dir, tmp_path / "a", tiny_overrides, **cfg))
    straight.fit(show_progress=False)

    first = Trainer(tiny_config(photo_dir, tmp_path / "b", tiny_overrides, **cfg))
    first.fit(until=2, show_progress=False)
    torch.manual_seed(99)  # the checkpoint, not the state of this process, must decide everything
    resumed = Trainer.from_checkpoint(first.checkpoint_path)
    assert resumed.iteration == 2
    resumed.fit(show_progress=False)

    assert resumed.iteration == straight.iteration == 4
    assert_same_weights(straight.model, resumed.model)
    assert_same_weights(straight.ema.module, resumed.ema.module)
    assert not torch.equal(straight.ema.module.conv_last.weight, straight.model.conv_last.weight)


def test_resume_keeps_the_schedule_unless_told_and_then_follows_the_new_one(photo_dir, tmp_path, tiny_overrides,
                                                                              caplog):
    first = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides, lr=1e-3, lr_schedule="constant"))
    first.fit(until=2, show_progress=False)
    new = {"lr": 4e-4, "lr_schedule": "linear", "lr_min": 0.0, "iterations": 6}

    with caplog.at_level(logging.INFO, logger="edpn.train"):
        kept = Trainer.from_checkpoint(first.checkpoint_path, new)
    assert kept.cfg.lr == 1e-3 and kept.cfg.iterations == 4
    assert "kept lr 0.001 from the checkpoint, ignored 0.0004" in caplog.text

    followed = Trainer.from_checkpoint(first.checkpoint_path, new, new_schedule=True)
    batches = followed.batches(build_train_dataset(followed.cfg))
    lrs = [followed.step(next(batches))["lr"] for _ in range(4)]
    assert lrs == pytest.approx([4e-4, 3e-4, 2e-4, 1e-4])  # linear from the resume point to 0 at iteration 6
    assert followed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_default_schedule_warms_up_then_decays_to_the_end_and_step_is_the_papers():
    cfg = TrainConfig(lr=2e-4, iterations=1000, warmup_iterations=100, lr_min=0.0)
    assert cfg.learning_rate(0) == pytest.approx(2e-6) and cfg.learning_rate(99) == pytest.approx(2e-4)
    assert cfg.learning_rate(550) == pytest.approx(1e-4) and cfg.learning_rate(999) < 1e-8
    paper = TrainConfig(lr_schedule="step", warmup_iterations=0)
    assert [paper.learning_rate(i) for i in (0, 99_999, 100_000, 250_000)] == pytest.approx(
        [1e-4, 1e-4, 8e-5, 6.4e-5])


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """`edpn` as a user runs it; returns the exit status and what it wrote to stderr."""
    capsys.readouterr()
    status = edpn(list(argv))
    return status, capsys.readouterr().err


def tiny_cli_args(photo_dir, run_dir, tiny_overrides, *extra: str) -> list[str]:
    return ["train", "--data", str(photo_dir), "--out-dir", str(run_dir), "--lq-patch", "8", "--batch-size", "2",
            "--checkpoint-every", "2", "--warmup", "0", "--no-progress", "--set", "tensorboard=false",
            "--set", f"model_overrides={json.dumps(tiny_overrides)}", *extra]


def test_resume_refuses_another_network_and_corrupt_checkpoints_in_one_line(photo_dir, tmp_path, tiny_overrides,
                                                                          capsys):
    trainer = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides, iterations=1))
    trainer.fit(show_progress=False)
    good = read_checkpoint(trainer.checkpoint_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "empty.pth").write_bytes(b"")
    (broken / "truncated.pth").write_bytes(trainer.checkpoint_path.read_bytes()[:5000])
    (broken / "garbage.pth").write_bytes(os.urandom(3000))
    torch.save({"weights": good["model"]}, broken / "foreign.pth")
    torch.save({**good, "config": json.dumps({**json.loads(good["config"]), "preset": "paper"})},
               broken / "paper.pth")
    wider = {**json.loads(good["config"]), "model_overrides": {**tiny_overrides, "channels": 16}}
    torch.save({**good, "config": json.dumps(wider)}, broken / "wider.pth")

    expected = {"empty": "empty file", "truncated": "not a loadable PyTorch checkpoint",
                "garbage": "not a loadable PyTorch checkpoint", "foreign": "not an EDPN Restore training",
                "paper": "another network: preset 'paper' (asked 'lite')", "wider": "does not fit this network"}
    for name, message in expected.items():
        path = broken / f"{name}.pth"
        status, err = run_cli(capsys, "train", "--resume", str(path), "--preset", "lite", "--no-progress")
        assert status == 2, err
        assert len(err.strip().splitlines()) == 1, err
        assert str(path) in err and message in err, err


def test_a_diverging_run_stops_cleanly_and_resumes_from_its_last_good_checkpoint(photo_dir, tmp_path,
                                                                                 tiny_overrides, capsys):
    run = tmp_path / "run"
    args = tiny_cli_args(photo_dir, run, tiny_overrides, "--iterations", "12", "--schedule", "constant", "--lr", "1e-3")
    assert run_cli(capsys, *args, "--until", "2")[0] == 0
    status, err = run_cli(capsys, *args, "--resume", "--new-schedule", "--lr", "1e6")
    assert status == 1, err
    last = err.strip().splitlines()[-1]
    assert "stopped: loss or gradient not finite for 5 steps in a row" in last
    assert f"{run / 'checkpoint.pth'} at iteration 2, is kept" in last
    assert "Traceback" not in err
    kept = read_checkpoint(run / "checkpoint.pth")
    assert all(torch.isfinite(v).all() for v in kept["model"].values())

    status, err = run_cli(capsys, *args, "--resume", "--new-schedule", "--lr", "5e-4")
    assert status == 0, err
    assert "changed lr 0.001 -> 0.0005" in err
    final = read_checkpoint(run / "checkpoint.pth")
    assert final["iteration"] == 12
    assert all(torch.isfinite(v).all() for v in final["model"].values())


def test_resuming_a_finished_run_says_there_is_nothing_to_train(photo_dir, tmp_path, tiny_overrides, capsys):
    run = tmp_path / "run"
    args = tiny_cli_args(photo_dir, run, tiny_overrides, "--iterations", "2")
    assert run_cli(capsys, *args)[0] == 0
    status, err = run_cli(capsys, *args, "--resume", "--until", "4")
    assert status == 2
    assert f"the run in {run} is at iteration 2 of 2 (--until 4): nothing to train" in err.strip().splitlines()[-1]
    weights = tmp_path / "w.safetensors"
    status, err = run_cli(capsys, *args, "--resume", "--export", str(weights))
    assert status == 0 and "nothing to train" in err and weights.is_file()


def test_unreadable_training_images_are_named_and_skipped(photo_dir, tmp_path, tiny_overrides, caplog, capsys):
    (photo_dir / "empty.png").write_bytes(b"")
    (photo_dir / "garbage.jpg").write_bytes(b"not a jpeg at all" * 50)
    (photo_dir / "truncated.png").write_bytes((photo_dir / "p0.png").read_bytes()[:400])
    with caplog.at_level(logging.WARNING, logger="edpn.data"):
        trainer = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides, iterations=2))
        trainer.fit(show_progress=False)
    assert trainer.iteration == 2
    assert "skipping 3 unreadable image(s)" in caplog.text
    for name in ("empty.png", "garbage.jpg", "truncated.png"):
        assert name in caplog.text

    lq_dir, gt_dir = tmp_path / "lq", tmp_path / "gt"
    for folder in (lq_dir, gt_dir):
        shutil.copytree(photo_dir, folder, ignore=lambda _, names: [n for n in names if not n.startswith("p")])
    (lq_dir / "p1.png").write_bytes(b"")
    paired = PairedFolderDataset(lq_dir, gt_dir, "deblock", lq_patch=8)
    with caplog.at_level(logging.WARNING, logger="edpn.data"):
        served = [paired[i]["name"] for i in range(3)]
    assert served == ["p0", "p2", "p2"] and "skipping unreadable pair" in caplog.text and "p1.png" in caplog.text

    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "empty.png").write_bytes(b"")
    status, err = run_cli(capsys, *tiny_cli_args(only_broken, tmp_path / "run2", tiny_overrides, "--iterations", "1"))
    assert status == 2 and "no readable images" in err and "empty.png" in err and "Traceback" not in err


def test_ema_is_validated_exported_and_started_from_weights_without_one(photo_dir, tmp_path, tiny_overrides):
    plain = Trainer(tiny_config(photo_dir, tmp_path / "a", tiny_overrides, iterations=2, ema_decay=0))
    plain.fit(show_progress=False)
    assert "model_raw" not in read_checkpoint(plain.checkpoint_path)
    with pytest.raises(ValueError, match="keeps no EMA"):
        plain.export(tmp_path / "x.safetensors")

    resumed = Trainer.from_checkpoint(plain.checkpoint_path, {"ema_decay": 0.9, "iterations": 4},
                                      new_schedule=True)
    assert_same_weights(resumed.model, resumed.ema.module)
    resumed.fit(show_progress=False)
    ema_file = resumed.export(tmp_path / "ema.safetensors", half=False)
    raw_file = resumed.export(tmp_path / "raw.safetensors", half=False, weights="raw")
    assert_same_weights(load_model(ema_file)[0], resumed.ema.module)
    assert_same_weights(load_model(raw_file)[0], resumed.model)
    assert read_weights_info(ema_file).metadata["weights"] == "ema 0.9"
    assert_same_weights(load_model(resumed.checkpoint_path)[0], resumed.ema.module)  # what ship_weights reads


def y_channel(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma on 16..235, written out independently of edpn_core.metrics.psnr_ssim."""
    rgb = img.astype(np.float64) / 255
    return 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def test_validation_scores_the_8bit_image_a_user_saves(photo_dir, select_dir, tmp_path, tiny_overrides):
    from skimage.metrics import peak_signal_noise_ratio

    cfg = tiny_config(photo_dir, tmp_path, tiny_overrides, val_data=str(select_dir), val_patch=16, val_items=3)
    trainer = Trainer(cfg)
    items = build_val_items(cfg)
    scores = validate(trainer.model, items, trainer.device, scale=4)
    expected = []
    for item in items:
        with torch.no_grad():
            out = trainer.model(item["lq"][None])[0].numpy().transpose(1, 2, 0)
        saved = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
        gt = np.rint(item["gt"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
        expected.append(peak_signal_noise_ratio(y_channel(gt)[4:-4, 4:-4], y_channel(saved)[4:-4, 4:-4],
                                                data_range=255))
    assert scores["psnr_y"] == pytest.approx(np.mean(expected), abs=1e-9)


def test_validation_picks_detailed_crops_and_keeps_the_best_checkpoint(photo_dir, select_dir, tmp_path,
                                                                      tiny_overrides):
    from edpn_core.training.validation import texture

    detailed = tiny_config(photo_dir, tmp_path, tiny_overrides, val_data=str(select_dir), val_patch=12, val_items=3,
                           val_every=1, iterations=3, lr=3e-3, ema_decay=0)
    chosen = build_val_items(detailed)
    assert [item["name"] for item in chosen] == [item["name"] for item in build_val_items(detailed)]
    random_crops = build_val_items(detailed.updated(val_crops="random"))
    assert np.mean([texture(i["gt"]) for i in chosen]) > np.mean([texture(i["gt"]) for i in random_crops])
    assert len({item["name"].split("_")[0] for item in chosen}) == 3  # one per photo

    trainer = Trainer(detailed)
    last = trainer.fit(show_progress=False)
    best = read_checkpoint(trainer.best_path)["best"]
    assert best["psnr_y"] >= last["psnr_y"] and best == trainer.best
    assert "gain_y" in last
    with pytest.raises(ValueError, match="lie in the training data"):
        build_val_items(detailed.updated(data=str(tmp_path)))


def test_grid_validation_scores_every_family_and_format_as_the_report_degrades_them(photo_dir, tmp_path,
                                                                                   tiny_overrides, caplog):
    from edpn_core.evaluate import FAMILY_BLURS, INPUT_FORMATS, eval_items

    select_dir = tmp_path / "select"
    select_dir.mkdir()
    for i in range(2):  # room for at least four 64 px crops each
        photo = Image.open(photo_dir / f"p{i}.png").resize((192, 192), Image.Resampling.BICUBIC)
        photo.save(select_dir / f"p{i}.png")
    cfg = tiny_config(photo_dir, tmp_path, tiny_overrides, val_data=str(select_dir), val_patch=16, val_items=8,
                      val_crops="grid", val_every=2, iterations=2)
    items = build_val_items(cfg)
    families = [item["groups"][0] for item in items]
    formats = [item["groups"][1] for item in items]
    assert len(items) == 8 * len(FAMILY_BLURS)  # 8 crops, each under every blur family once
    assert {families.count(f"family {f}") for f in FAMILY_BLURS} == {8}
    assert {formats.count(f"input {fmt}") for fmt in INPUT_FORMATS["sr"]} == {len(items) // 4}
    assert {(f, fmt) for f, fmt in zip(families, formats)} == {
        (f"family {f}", f"input {fmt}") for f in FAMILY_BLURS for fmt in INPUT_FORMATS["sr"]}
    report = eval_items(select_dir, "sr", crop=64, crops_per_photo=4, seed=cfg.seed + 10_007)
    drawn = {(i.name, f"family {i.condition.family}", f"input {i.condition.input_format}"): i.lq for i in report}
    for item in items:  # the very inputs a full report grid of these crops would score, noise-free
        assert np.array_equal(item["lq"].numpy().transpose(1, 2, 0), drawn[(item["name"], *item["groups"])])

    trainer = Trainer(cfg)
    with caplog.at_level(logging.INFO, logger="edpn.train"):
        scores = trainer.fit(show_progress=False)
    per_family = [scores[f"gain_y family {f}"] for f in FAMILY_BLURS]
    assert scores["gain_y"] == pytest.approx(np.mean(per_family), abs=1e-9)  # equal counts per family
    assert trainer.group_curve == [(2, {"all": scores["gain_y"], **{key[len("gain_y "):]: value for key, value
                                                                    in scores.items() if key.startswith("gain_y ")}})]
    assert "gain per group: all " in caplog.text and ", family defocus " in caplog.text


def test_dcn_offsets_past_the_limit_are_reported(photo_dir, tmp_path, tiny_overrides, caplog):
    trainer = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides, iterations=1, dcn_offset_warning=-1.0))
    with caplog.at_level(logging.WARNING, logger="edpn.train"):
        trainer.fit(show_progress=False)
    assert "mean |DCN offset|" in caplog.text


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
    assert_same_weights(trained.ema.module, tuned.model)
    assert_same_weights(tuned.model, tuned.ema.module)
    tuned.fit(show_progress=False)
    meta = read_weights_info(tuned.export(tmp_path / "t.safetensors")).metadata
    assert (meta["initialised_from"], meta["iterations_before"], meta["iterations"]) == ("w.safetensors", "2", "4")
    with pytest.raises(ValueError, match="task 'sr' \\(want 'deblock'\\)"):
        Trainer(tiny_config(photo_dir, tmp_path / "c", tiny_overrides, task="deblock", init_weights=str(weights)))


def test_sampler_restarts_where_it_stopped():
    full = list(itertools.islice(IterationSampler(7, seed=3), 20))
    assert sorted(full[:7]) == list(range(7))
    assert list(itertools.islice(IterationSampler(7, seed=3, start=9), 11)) == full[9:]


def test_two_ranks_draw_disjoint_samples_covering_the_set_once_per_epoch(photo_dir, tmp_path, tiny_overrides):
    ranks = [list(itertools.islice(IterationSampler(10, seed=3, rank=r, world=2), 5)) for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1]) and sorted(ranks[0] + ranks[1]) == list(range(10))
    resumed = list(itertools.islice(IterationSampler(10, seed=3, start=2, rank=1, world=2), 3))
    assert resumed == ranks[1][2:]
    cfg = tiny_config(photo_dir, tmp_path, tiny_overrides, iterations=5, batch_size=2)
    assert len(build_train_dataset(cfg, world=2)) == 5 * 2 * 2  # every crop of the run drawn once


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


RANK_SCRIPT = """
import json, os, sys, torch
torch.set_num_threads(1)
from edpn_core.training import TrainConfig, Trainer
settings, results = json.loads(sys.argv[1]), sys.argv[2]
rank = int(os.environ["RANK"])
trainer = Trainer(TrainConfig().updated(**settings, out_dir=os.path.join(results, f"out-rank{rank}")))
seen, losses, step = [], [], trainer.step
def recording_step(batch):
    seen.extend(batch["name"])
    logs = step(batch)
    losses.append(logs["loss"])
    return logs
trainer.step = recording_step
trainer.fit(show_progress=False)
torch.save({"model": trainer.model.state_dict(), "ema": trainer.ema.module.state_dict(), "seen": seen,
            "losses": losses}, os.path.join(results, f"rank{rank}.pt"))
torch.distributed.destroy_process_group()
"""


def test_two_torchrun_processes_on_the_cpu_train_one_model_and_only_rank_0_writes(photo_dir, tmp_path,
                                                                                  tiny_overrides):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    cfg = tiny_config(photo_dir, tmp_path, tiny_overrides, iterations=3, batch_size=2, checkpoint_every=1)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "out_dir"}
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), json.dumps(settings), str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for key in ("model", "ema"):
        for name, value in ranks[0][key].items():
            assert torch.equal(value, ranks[1][key][name]), (key, name)
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the averaged loss, the same on every rank
    indices = [int(name.rsplit("_", 1)[1]) for rank in ranks for name in rank["seen"]]
    assert sorted(indices) == list(range(3 * 2 * 2))  # disjoint, and every crop of the run once
    assert (tmp_path / "out-rank0" / "checkpoint.pth").is_file()
    assert not (tmp_path / "out-rank1").exists()


def poisoned_latest(trainer: Trainer, value: float) -> None:
    """The run's latest checkpoint with every weight set to `value`."""
    latest = read_checkpoint(trainer.checkpoint_path)
    poisoned = {k: torch.full_like(v, value) if v.is_floating_point() else v for k, v in latest["model"].items()}
    torch.save({**latest, "model": poisoned, "model_raw": poisoned}, trainer.checkpoint_path)


def test_a_saved_checkpoint_that_diverges_is_rolled_back_to_the_previous_one(photo_dir, tmp_path, tiny_overrides):
    trainer = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides, iterations=12))
    trainer.fit(until=4, show_progress=False)
    assert read_checkpoint(tmp_path / "run" / "checkpoint.prev.pth")["iteration"] == 2
    poisoned_latest(trainer, 9e3)  # finite and within bounds, but the network overflows on every batch

    resumed = Trainer.from_checkpoint(trainer.checkpoint_path)
    assert resumed.iteration == 4
    with pytest.raises(TrainingDiverged, match=r"checkpoint.pth at iteration 2, is kept"):
        resumed.fit(show_progress=False)
    assert read_checkpoint(trainer.checkpoint_path)["iteration"] == 2


def test_resume_passes_over_a_checkpoint_with_nan_weights_to_the_previous_one(photo_dir, tmp_path, tiny_overrides,
                                                                            caplog):
    """Not blamed on the learning rate after five failed steps: the file is named and the previous one used."""
    trainer = Trainer(tiny_config(photo_dir, tmp_path, tiny_overrides, iterations=12))
    trainer.fit(until=4, show_progress=False)
    poisoned_latest(trainer, float("nan"))
    with caplog.at_level(logging.WARNING, logger="edpn.train"):
        resumed = Trainer.from_checkpoint(trainer.checkpoint_path)
    assert resumed.iteration == 2
    assert f"passed over {trainer.checkpoint_path}: tensor" in caplog.text and "NaN" in caplog.text


def test_settings_that_name_a_choice_refuse_anything_else():
    """The CLI offers the same constants as choices; a config file or --set is held to them here."""
    for setting in ("lr_schedule", "data_kind", "val_crops"):
        with pytest.raises(ValueError, match=f"{setting} must be one of"):
            TrainConfig(**{setting: "sometimes"})


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_training_with_a_checkpoint_that_resumes(photo_dir, tmp_path, tiny_overrides,
                                                                        capsys, monkeypatch, sig, status):
    run = tmp_path / "run"
    step = Trainer.step

    def step_then_signal(self, batch):
        logs = step(self, batch)
        if self.iteration == 3:
            os.kill(os.getpid(), sig)  # as the shell delivers it, between two iterations
        return logs

    monkeypatch.setattr(Trainer, "step", step_then_signal)
    args = tiny_cli_args(photo_dir, run, tiny_overrides, "--iterations", "8", "--checkpoint-every", "100")
    code, err = run_cli(capsys, *args)
    assert code == status
    last = err.strip().splitlines()[-1]
    assert last == f"edpn train: stopped at iteration 3, checkpoint in {run} (--resume continues)"
    assert read_checkpoint(run / "checkpoint.pth")["iteration"] == 3  # not lost for want of a periodic checkpoint
    monkeypatch.undo()
    assert run_cli(capsys, *args, "--resume")[0] == 0
    assert read_checkpoint(run / "checkpoint.pth")["iteration"] == 8


@pytest.mark.parametrize("second, last", [
    (signal.SIGINT, "edpn train: interrupted"),
    # `make campaign`'s parent forwards a SIGTERM on the Ctrl+C its chunks already had: the stop still finishes
    (signal.SIGTERM, "edpn train: stopped at iteration 2"),
])
def test_a_second_ctrl_c_quits_at_once_and_a_forwarded_sigterm_does_not(photo_dir, tmp_path, tiny_overrides, capsys,
                                                                         monkeypatch, second, last):
    step = Trainer.step

    def step_then_signal(self, batch):
        logs = step(self, batch)
        if self.iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), second)
        return logs

    monkeypatch.setattr(Trainer, "step", step_then_signal)
    code, err = run_cli(capsys, *tiny_cli_args(photo_dir, tmp_path / "run", tiny_overrides, "--iterations", "8"))
    assert code == 130 and err.strip().splitlines()[-1].startswith(last), err  # 130: a Ctrl+C came first
