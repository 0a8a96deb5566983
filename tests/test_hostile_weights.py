"""Hostile or broken weights files: every command refuses them before the model runs, with one line naming the
file and the documented exit code, and writes nothing."""
import builtins
import json
import os
import re
import warnings
import zipfile

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from edpn_core.cli import main
from edpn_core.model_io import WeightsError, load_model, read_weights_info


def rewritten(tiny_sr_weights, dst, tensors=None, config=None, meta=None):
    """A copy of `tiny_sr_weights` with tensors, config fields or metadata changed."""
    with safe_open(str(tiny_sr_weights), framework="pt") as f:
        state = {k: f.get_tensor(k).float() for k in f.keys()}
        metadata = dict(f.metadata())
    if tensors:
        tensors(state)
    if config:
        cfg = json.loads(metadata["config"])
        config(cfg)
        metadata["config"] = json.dumps(cfg)
    if meta:
        meta(metadata)
    save_file(state, str(dst), metadata=metadata)
    return dst


def offset_tensor(state) -> str:
    """A tensor that feeds the deformable convolution's offsets: where a NaN used to crash torchvision."""
    return next(k for k in state if "offset" in k)


def fill(value):
    def change(state):
        state[offset_tensor(state)].fill_(value)
    return change


def set_field(name, value):
    return lambda cfg: cfg.__setitem__(name, value)


SAFETENSORS_KINDS = {
    "nan": (dict(tensors=fill(float("nan"))), "NaN or infinity"),
    "inf": (dict(tensors=fill(float("inf"))), "NaN or infinity"),
    "huge values": (dict(tensors=fill(1e30)), "not trained weights"),
    "wrong shape": (dict(tensors=lambda s: s.__setitem__(offset_tensor(s), torch.zeros(3, 3))), "has shape"),
    "missing tensor": (dict(tensors=lambda s: s.pop(offset_tensor(s))), "do not match"),
    "extra tensor": (dict(tensors=lambda s: s.__setitem__("stowaway", torch.zeros(1))), "do not match"),
    "integer tensor": (dict(tensors=lambda s: s.__setitem__(offset_tensor(s), s[offset_tensor(s)].int())),
                       "number type"),
    "config says 40000 channels": (dict(config=set_field("channels", 40000)), "outside"),
    "config field of the wrong type": (dict(config=set_field("channels", "8")), "whole number"),
    "config field a boolean": (dict(config=set_field("copies", True)), "whole number"),
    "config unknown field": (dict(config=set_field("turbo", 1)), "unknown"),
    "config unknown task": (dict(config=set_field("task", "denoise")), "task"),
    "config inconsistent": (dict(config=set_field("deformable_groups", 3)), "inconsistent"),
    "config not a mapping": (dict(meta=lambda m: m.__setitem__("config", "[1, 2]")), "not a mapping"),
    "config not JSON": (dict(meta=lambda m: m.__setitem__("config", "{")), "not valid JSON"),
    "no format": (dict(meta=lambda m: m.pop("format")), "not an EDPN Restore weights file"),
    "config deeply nested": (dict(meta=lambda m: m.__setitem__("config", DEEP)), "nested too deeply"),
    "config integer of 5000 digits": (dict(meta=lambda m: m.__setitem__("config", re.sub(
        r'"channels": \d+', '"channels": ' + "9" * 5000, m["config"]))), "Exceeds the limit"),
    "float8 tensor": (dict(tensors=lambda s: s.__setitem__(offset_tensor(s), s[offset_tensor(s)].to(
        torch.float8_e4m3fn))), "number type or layout"),
}
DEEP = "[" * 100_000 + "]" * 100_000  # JSON that exhausts a recursive parser


def bad_safetensors(kind, tiny_sr_weights, tmp_path):
    changes, expected = SAFETENSORS_KINDS[kind]
    return rewritten(tiny_sr_weights, tmp_path / "bad.safetensors", **changes), expected


def checkpoint(path, model_state, train_config) -> "os.PathLike":
    torch.save({"model": model_state, "config": train_config, "iteration": 7}, path)
    return path


class CallsShell:
    def __reduce__(self):
        return os.system, ("echo pwned > pwned.txt",)


class CallsEval:
    def __reduce__(self):
        return builtins.eval, ("open('pwned.txt', 'w')",)


class SubclassedTensor(torch.Tensor):
    pass


def zip_bomb(path, model_state, train_config) -> "os.PathLike":
    """A real checkpoint plus a 64 MiB member deflated into a few kilobytes."""
    checkpoint(path, model_state, train_config)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive, archive.open("bad/data/bomb", "w") as member:
        for _ in range(64):
            member.write(bytes(1 << 20))
    return path


def bad_checkpoint(kind, tiny_sr_weights, tmp_path, tiny_overrides):
    """(path, expected words) for a .pth of the given kind."""
    path = tmp_path / "bad.pth"
    state = load_model(tiny_sr_weights)[0].state_dict()
    config = {"preset": "lite", "task": "sr", "model_overrides": tiny_overrides}
    if kind == "no preset":
        return checkpoint(path, state, json.dumps({"task": "sr"})), "no known preset"
    if kind == "config not a mapping":
        return checkpoint(path, state, json.dumps([1, 2])), "not a mapping"
    if kind == "overrides of the wrong type":
        return checkpoint(path, state, json.dumps({**config, "model_overrides": {"channels": 8.5}})), "whole number"
    if kind == "nan":
        state[offset_tensor(state)].fill_(float("nan"))
        return checkpoint(path, state, json.dumps(config)), "NaN or infinity"
    if kind == "other preset's shapes":
        return checkpoint(path, state, json.dumps({"preset": "lite", "task": "sr"})), "do not match"
    if kind == "pickle calling os.system":
        torch.save({"model": CallsShell(), "config": json.dumps(config)}, path)
        return path, "refused: it would call"
    if kind == "pickle calling eval":
        torch.save({"model": CallsEval(), "config": json.dumps(config)}, path)
        return path, "refused: it would call eval"
    if kind == "tensor subclass":
        state[offset_tensor(state)] = state[offset_tensor(state)].as_subclass(SubclassedTensor)
        return checkpoint(path, state, json.dumps(config)), "refused: it would call test_hostile_weights.Subclassed"
    if kind == "deeply nested config":
        return checkpoint(path, state, DEEP), "nested too deeply"
    if kind == "float8 tensor":
        state[offset_tensor(state)] = state[offset_tensor(state)].to(torch.float8_e5m2)
        return checkpoint(path, state, json.dumps(config)), "number type or layout"
    if kind == "sparse tensor":
        state[offset_tensor(state)] = state[offset_tensor(state)].to_sparse()
        return checkpoint(path, state, json.dumps(config)), "number type or layout"
    if kind == "key not a string":
        state[7] = state.pop(offset_tensor(state))
        return checkpoint(path, state, json.dumps(config)), "not a set of named tensors"
    if kind == "zip bomb":
        return zip_bomb(path, state, json.dumps(config)), "zip bomb"
    if kind == "not a checkpoint":
        torch.save([1, 2, 3], path)
        return path, "not an EDPN Restore training checkpoint"
    if kind == "truncated":
        checkpoint(path, state, json.dumps(config))
        path.write_bytes(path.read_bytes()[:3000])
        return path, "not a loadable PyTorch checkpoint"
    if kind == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
        return path, "not a loadable PyTorch checkpoint"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "empty"
    raise AssertionError(kind)


CHECKPOINT_KINDS = ["no preset", "config not a mapping", "overrides of the wrong type", "nan", "other preset's shapes",
                    "pickle calling os.system", "pickle calling eval", "tensor subclass", "deeply nested config",
                    "float8 tensor", "sparse tensor", "key not a string", "zip bomb", "not a checkpoint", "truncated",
                    "garbage", "empty"]


def one_error_line(capsys, path) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(path) in err[0] and "Traceback" not in err[0]
    return err[0]


def assert_restore_refuses(bad, expected, photo, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["restore", str(photo), "-o", str(out), "--task", "sr", "--weights", str(bad)]) == 2
    line = one_error_line(capsys, bad)
    assert expected in line
    assert not out.exists()


@pytest.mark.parametrize("kind", sorted(SAFETENSORS_KINDS))
def test_restore_refuses_hostile_safetensors(kind, tiny_sr_weights, photo, tmp_path, capsys):
    bad, expected = bad_safetensors(kind, tiny_sr_weights, tmp_path)
    assert_restore_refuses(bad, expected, photo, tmp_path, capsys)


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_restore_refuses_hostile_checkpoints(kind, tiny_sr_weights, photo, tmp_path, capsys, tiny_overrides,
                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad, expected = bad_checkpoint(kind, tiny_sr_weights, tmp_path, tiny_overrides)
    assert_restore_refuses(bad, expected, photo, tmp_path, capsys)
    assert not (tmp_path / "pwned.txt").exists()


def test_a_zip_bomb_is_refused_before_anything_is_inflated(tiny_sr_weights, tmp_path, tiny_overrides, monkeypatch):
    bad, _ = bad_checkpoint("zip bomb", tiny_sr_weights, tmp_path, tiny_overrides)
    monkeypatch.setattr("edpn_core.model_io.torch.load", lambda *a, **k: pytest.fail("archive read"))
    with pytest.raises(WeightsError, match=r"declares 64 MiB in a 0.\d MiB file"):
        read_weights_info(bad)


def test_a_weights_file_that_may_not_be_read_says_so(tiny_sr_weights, monkeypatch):
    monkeypatch.setattr("edpn_core.model_io.os.access", lambda path, mode: False)
    with pytest.raises(WeightsError, match=f"{tiny_sr_weights}: cannot read file \\(permission denied\\)"):
        load_model(tiny_sr_weights)


def test_blocked_pickle_does_not_repeat_the_unsafe_advice(tiny_sr_weights, tmp_path, tiny_overrides):
    bad, _ = bad_checkpoint("pickle calling os.system", tiny_sr_weights, tmp_path, tiny_overrides)
    with pytest.raises(WeightsError) as caught:
        read_weights_info(bad)
    assert "system" in str(caught.value) and "weights_only" not in str(caught.value)


def test_oversized_config_is_refused_from_the_metadata_alone(tiny_sr_weights, tmp_path, monkeypatch):
    """A tiny file declaring 40000 channels must not get as far as building (58 GB) the model."""
    bad, _ = bad_safetensors("config says 40000 channels", tiny_sr_weights, tmp_path)
    monkeypatch.setattr("edpn_core.model_io.EDPN", lambda *a, **k: pytest.fail("model built"))
    with pytest.raises(WeightsError, match="channels = 40000 is outside"):
        load_model(bad)


@pytest.mark.parametrize("kind", ["nan", "wrong shape", "config field of the wrong type", "config deeply nested"])
def test_eval_and_fine_tuning_refuse_hostile_weights(kind, tiny_sr_weights, tmp_path, capsys, tiny_overrides, photo):
    bad, expected = bad_safetensors(kind, tiny_sr_weights, tmp_path)
    assert main(["eval", str(photo.parent), "--weights", str(bad), "--items", "1"]) == 2
    assert expected in one_error_line(capsys, bad)
    run = tmp_path / "run"
    assert main(["train", "--preset", "lite", "--task", "sr", "--data", str(photo.parent), "--init-weights", str(bad),
                 "--set", f"model_overrides={json.dumps(tiny_overrides)}", "--out-dir", str(run),
                 "--iterations", "1", "--no-progress"]) == 2
    assert expected in one_error_line(capsys, bad)
    assert not (run / "checkpoint.pth").exists()


def test_info_checks_every_weights_file_and_goes_on_past_bad_ones(tiny_sr_weights, tmp_path, capsys, tiny_overrides):
    bad, expected = bad_safetensors("nan", tiny_sr_weights, tmp_path)
    state = load_model(tiny_sr_weights)[0].state_dict()
    pth = checkpoint(tmp_path / "run.pth", state,
                     json.dumps({"preset": "lite", "task": "sr", "model_overrides": tiny_overrides}))
    assert main(["info", str(bad), str(tiny_sr_weights), str(pth)]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [captured.err.strip()] and str(bad) in captured.err
    assert f"{tiny_sr_weights}: preset lite, task sr" in captured.out
    assert f"{pth}: preset lite, task sr" in captured.out


def test_exported_weights_are_readable_by_others(tiny_sr_weights):
    mask = os.umask(0)
    os.umask(mask)
    assert tiny_sr_weights.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_sparse_tensor_is_refused_without_torchs_warnings(tiny_sr_weights, tmp_path, tiny_overrides):
    """torch warns twice while loading sparse tensors; the user gets the one line only."""
    bad, _ = bad_checkpoint("sparse tensor", tiny_sr_weights, tmp_path, tiny_overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(WeightsError, match="number type or layout"):
            load_model(bad)
    assert [str(w.message) for w in caught] == []
