"""Training under crashes and bad options: a checkpoint survives SIGKILL at any step of its save, and every bad
setting or path is one line with exit 2 before anything trains."""
import os
import signal
import zipfile
from collections.abc import Callable

import pytest
import torch
from test_train import run_cli, tiny_cli_args, tiny_config

from edpn_core.training.checkpoint import newest_checkpoint
from edpn_core.training.config import TrainConfig
from edpn_core.training.train import Trainer

SAVE_STEPS = ("fsync", "replace")  # the calls of a checkpoint save that reach the disk, in replace_durably


def save_killed_at(save: Callable[[], object], step: int) -> None:
    """Run `save` in a child process that SIGKILLs itself as its `step`-th fsync or rename begins (never, when
    the save has fewer): what is on disk afterwards is what a crash there leaves."""
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which dies by SIGKILL or exits at once
        calls = 0

        def fault(real):
            def call(*args):
                nonlocal calls
                calls += 1
                if calls == step:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args)
            return call

        for name in SAVE_STEPS:
            setattr(os, name, fault(getattr(os, name)))
        save()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.WIFEXITED(status) or os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill is injected into a forked process")
def test_a_checkpoint_survives_sigkill_at_every_fsync_and_rename_of_its_save(tmp_path, tiny_overrides):
    seen = set()
    for step in range(1, 8):
        trainer = Trainer(tiny_config(tmp_path, tmp_path / f"killed-at-{step}", tiny_overrides))
        trainer.iteration = 1
        trainer.save_checkpoint()
        trainer.iteration = 2
        save_killed_at(trainer.save_checkpoint, step)
        found, state, _ = newest_checkpoint(trainer.checkpoint_path)
        seen.add(state["iteration"])
        assert state["iteration"] in (1, 2), step
        resumed = Trainer.from_checkpoint(trainer.checkpoint_path)
        assert resumed.iteration == state["iteration"]
        resumed.save_checkpoint()  # what the crash left behind does not stop the next save
        assert newest_checkpoint(trainer.checkpoint_path)[0] == trainer.checkpoint_path
    assert seen == {1, 2}  # the kills fell before and after the new checkpoint took over


def test_resume_finds_the_previous_checkpoint_when_the_latest_is_missing(tmp_path, tiny_overrides, capsys):
    trainer = Trainer(tiny_config(tmp_path, tmp_path, tiny_overrides))
    trainer.iteration = 3
    trainer.save_checkpoint()
    trainer.save_checkpoint()
    trainer.checkpoint_path.unlink()  # a crash between the two renames of a save leaves only the previous one
    resumed = Trainer.from_checkpoint(trainer.checkpoint_path)
    assert resumed.iteration == 3

    (trainer.out_dir / "checkpoint.prev.pth").unlink()
    status, err = run_cli(capsys, "train", "--resume", "--out-dir", str(trainer.out_dir), "--no-progress")
    assert status == 2
    assert "checkpoint.pth: no checkpoint there; no checkpoint.prev.pth either" in err


BAD_OPTIONS = {
    "--checkpoint-every 0": (["--checkpoint-every", "0"], "checkpoint_every must be a whole number from 1"),
    "--lr inf": (["--lr", "inf"], "lr must be a number above 0"),
    "--ema-decay 2": (["--ema-decay", "2"], "ema_decay must be a number 0 (off) or more, below 1"),
    "--grad-clip -1": (["--grad-clip", "-1"], "grad_clip must be a number 0 (off) or more"),
    "--iterations -5": (["--iterations", "-5"], "iterations must be a whole number from 1"),
    "--lq-patch 1": (["--lq-patch", "1"], "lq_patch must be a whole number of pixels from 8"),
    "--batch-size 100000": (["--batch-size", "100000"], "batch_size must be a whole number from 1 to 1024"),
    "40000 channels": (["--set", 'model_overrides={"channels": 40000}'], "channels = 40000 is outside 1..256"),
    "jpeg_prob x": (["--set", 'degradation={"jpeg_prob": "x"}'], "jpeg_prob must be a number, got 'x'"),
    "kernel of a million": (["--set", 'degradation={"kernel_size": 1000001}'], "kernel_size must be an odd whole"),
    "iterations as text": (["--set", "iterations=many"], "iterations must be a whole number"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_training_options_are_one_line_before_anything_is_allocated(case, tmp_path, tiny_overrides, capsys,
                                                                         monkeypatch):
    monkeypatch.setattr("edpn_core.training.train.build_model", lambda *a, **k: pytest.fail("model built"))
    args, expected = BAD_OPTIONS[case]
    run = tmp_path / "run"
    status, err = run_cli(capsys, *tiny_cli_args(tmp_path, run, tiny_overrides, "--iterations", "2"), *args)
    assert status == 2
    assert err.strip().splitlines() == [err.strip()] and expected in err, err
    assert not run.exists()


def test_a_big_batch_of_big_crops_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pixels a batch"):
        TrainConfig(batch_size=1024, lq_patch=256)


def test_out_dir_that_is_a_file_and_export_that_is_a_folder_are_refused_before_training(tmp_path, tiny_overrides,
                                                                                         capsys):
    a_file = tmp_path / "run.txt"
    a_file.write_text("keep me")
    status, err = run_cli(capsys, *tiny_cli_args(tmp_path, a_file, tiny_overrides, "--iterations", "2"))
    assert status == 2 and f"{a_file}: the run folder (--out-dir) is a file" in err
    assert a_file.read_text() == "keep me"

    a_folder = tmp_path / "weights"
    a_folder.mkdir()
    run = tmp_path / "run"
    status, err = run_cli(capsys, *tiny_cli_args(tmp_path, run, tiny_overrides, "--iterations", "2"),
                          "--export", str(a_folder))
    assert status == 2 and f"{a_folder}: --export must name a file, and this is a folder" in err
    assert not run.exists() and list(a_folder.iterdir()) == []


def test_deeply_nested_checkpoint_config_is_refused_on_resume(tmp_path, tiny_overrides, capsys):
    trainer = Trainer(tiny_config(tmp_path, tmp_path, tiny_overrides))
    trainer.save_checkpoint()
    state = torch.load(trainer.checkpoint_path, weights_only=True)
    torch.save({**state, "config": "[" * 100_000 + "]" * 100_000}, trainer.checkpoint_path)
    status, err = run_cli(capsys, "train", "--resume", str(trainer.checkpoint_path), "--no-progress")
    assert status == 2 and "nested too deeply" in err and str(trainer.checkpoint_path) in err


def test_resume_of_a_malicious_checkpoint_names_the_callable_and_not_the_unsafe_way_round(tmp_path, capsys,
                                                                                           monkeypatch):
    from test_hostile_weights import CallsShell

    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "checkpoint.pth"
    torch.save({"model": CallsShell(), "optimizer": {}, "iteration": 1, "rng": {}, "config": "{}"}, bad)
    status, err = run_cli(capsys, "train", "--resume", str(bad), "--no-progress")
    assert status == 2 and f"{bad}: refused: it would call" in err and "system" in err
    assert "weights_only" not in err and not (tmp_path / "pwned.txt").exists()


def hostile_model(kind: str, model: dict) -> object:
    from test_hostile_weights import CallsEval, offset_tensor

    name = offset_tensor(model)
    if kind == "pickle calling eval":
        return CallsEval()
    if kind == "key not a string":
        return {**model, 7: model.pop(name)}
    return {**model, name: model[name].to(torch.float8_e5m2) if kind == "float8 tensor" else model[name].to_sparse()}


RESUME_KINDS = {"key not a string": "not a set of named tensors", "float8 tensor": "number type or layout",
                "sparse tensor": "number type or layout", "pickle calling eval": "refused: it would call eval",
                "zip bomb": "zip bomb"}


@pytest.mark.parametrize("kind", sorted(RESUME_KINDS))
def test_resume_refuses_hostile_checkpoints_as_weights_are_refused(kind, tmp_path, tiny_overrides, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(tiny_config(tmp_path, tmp_path, tiny_overrides))
    trainer.save_checkpoint()
    state = torch.load(trainer.checkpoint_path, weights_only=True)
    if kind == "zip bomb":
        with zipfile.ZipFile(trainer.checkpoint_path, "a", zipfile.ZIP_DEFLATED) as archive, archive.open(
                "checkpoint/data/bomb", "w") as member:
            for _ in range(64):
                member.write(bytes(1 << 20))
    else:
        torch.save({**state, "model": hostile_model(kind, state["model"])}, trainer.checkpoint_path)
    status, err = run_cli(capsys, "train", "--resume", str(trainer.checkpoint_path), "--no-progress")
    assert status == 2 and err.strip().splitlines() == [err.strip()]
    assert str(trainer.checkpoint_path) in err and RESUME_KINDS[kind] in err, err
    assert not (tmp_path / "pwned.txt").exists()


def test_a_failed_export_leaves_no_temp_file(tiny_sr_weights, tmp_path):
    from edpn_core.model_io import load_model, save_weights

    target = tmp_path / "weights.safetensors"
    target.mkdir()  # a folder where the file should go: the final rename fails
    with pytest.raises(OSError):
        save_weights(load_model(tiny_sr_weights)[0], target, "lite")
    assert not list(tmp_path.glob("*.tmp")) and list(target.iterdir()) == []
