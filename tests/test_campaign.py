"""The training campaign: a chunk writes its state back to the repository, a fresh clone on another machine
continues from it, a stop request still leaves a state, and the log says what each chunk added."""
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_training_failures import save_killed_at

from edpn_core.cli import main as edpn
from edpn_core.model_io import load_model
from edpn_core.training import campaign as campaigns
from edpn_core.training.campaign import Campaign


@pytest.fixture
def photos(tmp_path) -> Path:
    """Training photos in photos/train, the ones that pick checkpoints in photos/select."""
    rng = np.random.default_rng(0)
    for part in ("train", "select"):
        folder = tmp_path / "photos" / part
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return tmp_path / "photos"


@pytest.fixture
def campaign(tmp_path, photos, tiny_overrides, monkeypatch) -> Campaign:
    """A campaign with a tiny network, as a repository holds it: only the recipe, no state, no log; no shipped
    weights yet (EDPN_WEIGHTS_DIR empty)."""
    monkeypatch.setenv("EDPN_WEIGHTS_DIR", str(tmp_path / "weights"))
    root = tmp_path / "repo" / "campaign"
    root.mkdir(parents=True)
    overrides = ", ".join(f"{k} = {json.dumps(v)}" for k, v in tiny_overrides.items())
    root.joinpath("recipe.toml").write_text(f"""
[sr]
preset = "lite"
model_overrides = {{ {overrides} }}
data = "{photos / 'train'}"
val_data = "{photos / 'select'}"
val_items = 2
val_patch = 16
lq_patch = 8
batch_size = 2
iterations = 100
warmup_iterations = 0
checkpoint_every = 2
val_every = 2
tensorboard = false
degradation = {{ no_blur_prob = 0.33 }}
""")
    return Campaign(root, tmp_path / "session-1" / "runs")


def state_tensors(path: Path) -> tuple[dict, dict, dict]:
    return campaigns.read_state(path)


def test_a_fresh_clone_on_another_machine_continues_the_committed_state(campaign, tmp_path):
    first = campaigns.run_chunk(campaign, "sr", minutes=60, until=3)
    assert first["iterations"] == 3 and first["chunk_iterations"] == 3
    raw, ema, metadata = state_tensors(campaign.state_path("sr"))
    assert metadata["iteration"] == "3"
    assert all(t.dtype == torch.float32 for t in [*raw.values(), *ema.values()])
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)  # both kept, not one of them twice

    # A fresh clone: the committed folder travels, this session's runs/ does not.
    clone = Campaign(Path(shutil.copytree(campaign.root, tmp_path / "clone" / "campaign")),
                     tmp_path / "session-2" / "runs")
    trainer = campaigns.open_trainer(clone, "sr")
    assert trainer.iteration == 3
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, raw[name]), name
    for name, value in trainer.ema.module.state_dict().items():
        assert torch.equal(value, ema[name]), name

    campaigns.run_chunk(clone, "sr", minutes=60, until=5)
    lines = clone.log_lines()
    assert [line["iterations"] for line in lines] == [0, 3, 5]
    assert [line["chunk_iterations"] for line in lines] == [0, 3, 2]
    assert lines[0]["note"].startswith("starting weights")
    assert all(line["machine"] and line["select"] == lines[0]["select"] for line in lines)
    assert lines[-1]["val_iteration"] == 5 and lines[-1]["val_gain_db"] is not None
    assert lines[-1]["lr"] > 0 and lines[-1]["loss"] > 0
    assert [point[0] for point in lines[-1]["val_curve"]] == [4, 5]  # the chunk's validations (every 2), not 2
    (digest, curve), = campaigns.gain_curve(lines, "sr")
    assert digest == lines[0]["select"] and [point[0] for point in curve] == [0, 2, 3, 4, 5]
    assert campaigns.state_iteration(clone.state_path("sr")) == 5


def test_a_restart_in_the_same_session_resumes_its_checkpoint_with_the_optimizer(campaign):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    trainer = campaigns.open_trainer(campaign, "sr")
    assert trainer.iteration == 2
    assert trainer.optimizer.state  # Adam's moments came back: a bit-exact resume, not the committed state


def test_a_stop_request_ends_the_chunk_with_a_checkpoint_and_the_state_written(campaign, monkeypatch):
    requests = iter([False, True])
    monkeypatch.setattr(campaigns.StopRequest, "requested", lambda self: next(requests, True))
    line = campaigns.run_chunk(campaign, "sr", minutes=60)
    assert line["iterations"] == 2
    assert campaigns.state_iteration(campaign.state_path("sr")) == 2


def test_saving_twice_logs_nothing_new_and_the_log_prints_as_a_table(campaign, capsys):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    args = ["campaign", "--root", str(campaign.root), "--runs", str(campaign.runs)]
    assert edpn([*args, "save"]) == 0
    assert "nothing new to save" in capsys.readouterr().err
    assert edpn([*args, "log"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| task |") and len(table) == 4  # header, rule, start, one chunk
    assert edpn([*args, "log", "--curve"]) == 0
    curve = capsys.readouterr().out.splitlines()
    assert len(curve) == 3 and curve[2].startswith("| sr |") and "| 0: " in curve[2] and "; 2: " in curve[2]


def test_a_broken_recipe_is_one_clear_line(campaign, capsys):
    campaign.recipe_path.write_text("[sr]\nlearning_rate = 1e-4\n")
    assert edpn(["campaign", "--root", str(campaign.root), "--runs", str(campaign.runs), "save"]) == 2
    err = capsys.readouterr().err
    assert "recipe.toml [sr]: unknown training settings: ['learning_rate']" in err and "Traceback" not in err


def start_children(campaign, monkeypatch, tasks):
    """What `run` starts on 2 cores, the children stood in for by records of their command, environment and log."""
    class Child:
        def __init__(self, cmd, env, log):
            self.cmd, self.env, self.log = cmd, env, log

        def wait(self):
            return 0

    started = []
    monkeypatch.setattr(campaigns.os, "cpu_count", lambda: 2)
    assert campaigns.run_campaign(campaign, 30, tasks,
                                  launch=lambda *args: started.append(Child(*args)) or started[-1]) == 0
    return started


def with_deblock_table(campaign: Campaign) -> None:
    recipe = campaign.recipe_path.read_text()
    campaign.recipe_path.write_text(recipe + recipe.replace("[sr]", "[deblock]"))


def test_run_starts_one_niced_child_per_task_sharing_the_cores(campaign, monkeypatch):
    with_deblock_table(campaign)
    started = start_children(campaign, monkeypatch, ["sr", "deblock"])
    assert [child.cmd[child.cmd.index("chunk") + 1] for child in started] == ["sr", "deblock"]
    assert all(child.env["OMP_NUM_THREADS"] == "1" and "--minutes" in child.cmd for child in started)
    assert [child.log for child in started] == [campaign.runs / task / "chunk.log" for task in ("sr", "deblock")]


def test_run_starts_only_the_tasks_still_training(campaign, monkeypatch):
    recipe = campaign.recipe_path.read_text()
    campaign.recipe_path.write_text(recipe.replace("\niterations = 100\n", "\niterations = 2\n"))
    with_deblock_table(campaign)
    campaigns.run_chunk(campaign, "sr", minutes=60)
    started = start_children(campaign, monkeypatch, ["sr", "deblock"])
    assert [(child.cmd[child.cmd.index("chunk") + 1], child.env["OMP_NUM_THREADS"]) for child in started] == [
        ("deblock", "1")]  # a two-thread process collapses beside the session's work
    shutil.rmtree(campaign.runs)  # a fresh clone: only the committed state says sr is done
    assert start_children(campaign, monkeypatch, ["sr"]) == []


def eval_groups(gains: dict[str, float], shipped: str = "shipped.safetensors") -> dict:
    """`edpn eval --json` groups in which the candidate ("EDPN") differs from the shipped file by `gains`."""
    return {group: {"scores": {"EDPN": {"psnr_y": 30.0 + gain}, shipped: {"psnr_y": 30.0}}}
            for group, gain in gains.items()}


@pytest.mark.parametrize(("gains", "refused"), [
    ({"all": 0.3, "family none": 0.4, "family motion": -0.04, "input jpeg90": 0.1}, []),
    ({"all": 0.3, "family none": 0.4, "family motion": -0.06}, ["family motion"]),
    ({"all": 0.3, "family none": -0.01, "family motion": 0.2}, ["family none"]),
    ({"all": 0.3, "family none": -0.2, "family motion": 0.2}, ["family none"]),  # said once, not twice
    ({"all": -0.01, "family none": 0.1, "input jpeg90": -0.2}, ["all", "input jpeg90"]),
])
def test_the_shipping_rule_lets_a_real_gain_through_and_stops_a_loss(gains, refused):
    reasons = campaigns.shipping_verdict(eval_groups(gains), "EDPN", "shipped.safetensors")
    assert [reason.split(":")[0] for reason in reasons] == refused


def test_ship_replaces_the_shipped_file_only_when_the_rule_allows(campaign, tmp_path, monkeypatch):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    monkeypatch.chdir(tmp_path)  # the model card quotes the command with paths relative to here
    shipped = tmp_path / "shipped.safetensors"
    shipped.write_bytes(b"the file users have")
    scores = tmp_path / "scores.json"

    def fake_eval(gains):
        def run(command):
            assert command[command.index("--against") + 1] == str(shipped)
            scores.write_text(json.dumps({"groups": eval_groups(gains)}))
            return 0
        return run

    refused = campaigns.ship(campaign, "sr", tmp_path, shipped, scores, evaluate=fake_eval({"all": -0.1,
                                                                                            "family none": 0.1}))
    assert refused and shipped.read_bytes() == b"the file users have"
    assert campaigns.ship(campaign, "sr", tmp_path, shipped, scores,
                          evaluate=fake_eval({"all": 0.1, "family none": 0.1})) == []
    network, info = load_model(shipped)
    metrics = json.loads(info.metadata["metrics"])
    assert info.metadata["iterations"] == "2" and "groups" in metrics
    assert " --against shipped.safetensors " in metrics["validation"] and str(tmp_path) not in metrics["validation"]
    _, ema, _ = campaigns.read_state(campaign.state_path("sr"))
    for name, value in network.state_dict().items():
        assert torch.equal(value, ema[name].half().float()), name  # the EMA, as rounded to float16


def test_a_state_that_does_not_fit_the_recipe_is_one_clear_line(campaign, capsys):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    recipe = campaign.recipe_path.read_text()
    campaign.recipe_path.write_text(recipe.replace("reconstruction_blocks = 2", "reconstruction_blocks = 3"))
    shutil.rmtree(campaign.runs)  # a fresh clone: only the committed state to continue from
    assert edpn(["campaign", "--root", str(campaign.root), "--runs", str(campaign.runs), "chunk", "sr",
                 "--minutes", "1"]) == 2
    err = capsys.readouterr().err
    assert "sr.safetensors: does not fit the recipe's network" in err and "Traceback" not in err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill is injected into a forked process")
def test_the_committed_state_and_log_survive_sigkill_at_every_fsync_and_rename(campaign):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    before, outcomes = 2, set()
    for step in range(1, 8):
        after = before + 1
        campaigns.open_trainer(campaign, "sr").fit(until=after, show_progress=False)  # a newer checkpoint
        save_killed_at(lambda: campaigns.save_state(campaign, "sr"), step)
        committed = campaigns.state_iteration(campaign.state_path("sr"))
        logged = [line["iterations"] for line in campaign.log_lines() if line["task"] == "sr"]
        assert committed in (before, after) and logged[-1] in (before, committed), step
        outcomes.add(("state new" if committed == after else "state old") + (", line new" if logged[-1] == after
                                                                               else ", line old"))
        campaigns.save_state(campaign, "sr")  # the next save finishes what the crash left
        logged = [line["iterations"] for line in campaign.log_lines() if line["task"] == "sr"]
        assert campaigns.state_iteration(campaign.state_path("sr")) == after and logged.count(after) == 1
        before = after
    assert outcomes == {"state old, line old", "state new, line old", "state new, line new"}


def test_new_selection_photos_get_their_own_reference_point(campaign, photos):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    other = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(other).save(photos / "select" / "p0.png")  # another selection photo
    campaigns.run_chunk(campaign, "sr", minutes=60, until=4)
    lines = campaign.log_lines()
    assert [line["iterations"] for line in lines] == [0, 2, 2, 4]
    assert lines[0]["select"] == lines[1]["select"] != lines[2]["select"] == lines[3]["select"]
    assert lines[2]["note"] == "these weights scored on new selection crops"


def test_grid_selection_logs_the_gain_of_every_family_the_shipping_rule_judges(campaign, capsys):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    args = ["campaign", "--root", str(campaign.root), "--runs", str(campaign.runs), "log", "--groups"]
    assert edpn(args) == 0
    assert "no validation per group logged yet" in capsys.readouterr().out
    campaign.recipe_path.write_text(campaign.recipe_path.read_text().replace("val_items = 2", 'val_items = 2\n'
                                                                             'val_crops = "grid"'))
    campaigns.run_chunk(campaign, "sr", minutes=60, until=6)
    reference, chunk = campaign.log_lines()[2:]
    assert reference["note"] == "these weights scored on new selection crops" and reference["select"] == chunk["select"]
    families = {f"family {name}" for name in ("none", "gaussian", "defocus", "motion", "shake")}
    assert [point[0] for point in reference["val_group_curve"]] == [2]
    assert [point[0] for point in chunk["val_group_curve"]] == [4, 6]
    assert all(families <= set(groups) for _, groups in [*reference["val_group_curve"], *chunk["val_group_curve"]])
    assert edpn(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"sr, select crops {chunk['select']}: gain over the baseline (dB) per group"
    assert table[1].startswith("| iteration | all | family defocus |")
    assert [row.split("|")[1].strip() for row in table[3:]] == ["2", "4", "6"]
    assert f"{chunk['val_group_curve'][-1][1]['family none']:+.3f}" in table[-1]


def test_every_validation_is_kept_judged_against_the_shipped_file_and_can_be_shipped(campaign, tmp_path, capsys):
    campaign.recipe_path.write_text(campaign.recipe_path.read_text().replace("val_items = 2", 'val_items = 2\n'
                                                                             'val_crops = "grid"'))
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    assert campaigns.kept_shipped_gains(campaign, "sr") is None  # nothing shipped yet: no bar
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(campaign.validated_path("sr", 2), weights / "edpn-lite-sr.safetensors")  # users get iteration 2
    campaigns.run_chunk(campaign, "sr", minutes=60, until=6)
    bar = campaigns.kept_shipped_gains(campaign, "sr")
    at_two = next(groups for line in campaign.log_lines() for i, groups in line.get("val_group_curve", []) if i == 2)
    assert bar["gains"].keys() == at_two.keys() and "all" in at_two
    assert all(bar["gains"][g] == pytest.approx(at_two[g], abs=0.02) for g in at_two)  # same weights, in fp16

    assert edpn(["campaign", "--root", str(campaign.root), "--runs", str(campaign.runs), "log", "--groups"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].startswith("| iteration | all | family defocus |")
    assert table[1].endswith("| vs the shipped file (shipping rule on select) |")
    assert table[3].startswith("| shipped file (edpn-lite-sr.safetensors) |")
    verdicts = {row.split("|")[1].strip(): row.split("|")[-2].strip() for row in table[4:]}
    assert verdicts.keys() == {"0", "2", "4", "6"}
    assert all(v == "passes" or v.startswith(("all:", "family ", "input ")) for v in verdicts.values())

    scores = tmp_path / "scores.json"

    def passing(command):
        assert command[command.index("--weights") + 1].endswith("candidate.safetensors")
        scores.write_text(json.dumps({"groups": eval_groups({"all": 0.1, "family none": 0.1}, shipped.name)}))
        return 0

    shipped = weights / "edpn-lite-sr.safetensors"
    with pytest.raises(ValueError, match="no EMA validated at iteration 5"):
        campaigns.ship(campaign, "sr", tmp_path, shipped, scores, evaluate=passing, iteration=5)
    assert campaigns.ship(campaign, "sr", tmp_path, shipped, scores, evaluate=passing, iteration=4) == []
    network, info = load_model(shipped)
    validated, _ = load_model(campaign.validated_path("sr", 4))
    assert info.metadata["iterations"] == "4"
    for name, value in network.state_dict().items():
        assert torch.equal(value, validated.state_dict()[name]), name
    assert campaigns.kept_shipped_gains(campaign, "sr") is None  # another file now: its bar is scored afresh


def test_a_best_scored_on_other_crops_is_not_kept_against_new_ones(campaign):
    trainer = campaigns.open_trainer(campaign, "sr")
    trainer.best = {"iteration": 0, "psnr_y": 99.0, "gain_y": 80.0}  # on crops no longer used
    campaigns.log_reference_point(campaign, "sr", trainer)
    assert trainer.best["iteration"] == 0
    assert round(trainer.best["gain_y"], 3) == campaign.log_lines()[-1]["val_gain_db"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="two writers are forked processes")
def test_two_chunks_logging_at_once_both_keep_their_lines(campaign):
    children = []
    for task in ("sr", "deblock"):
        child = os.fork()
        if child == 0:  # pragma: no cover - a writer, ended with os._exit
            for i in range(40):
                campaigns.append_log(campaign, {"task": task, "iterations": i})
            os._exit(0)
        children.append(child)
    for child in children:
        os.waitpid(child, 0)
    lines = campaign.log_lines()
    assert sorted((line["task"], line["iterations"]) for line in lines) == sorted(
        (task, i) for task in ("sr", "deblock") for i in range(40))


def test_a_recipe_comparison_trains_each_arm_from_one_point_on_equal_samples(campaign, tmp_path, capsys):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    start_gain = campaign.log_lines()[-1]["val_gain_db"]
    out = tmp_path / "comparison.json"
    args = ["campaign", "--root", str(campaign.root), "--runs", str(campaign.runs), "compare", "sr",
            "--arm", "lr=5e-4", "--arm", "batch_size=4, ema_decay=0.998", "--iterations", "2", "--json", str(out)]
    assert edpn(args) == 0
    rows = {row["arm"]: row for row in json.loads(out.read_text())["arms"]}
    assert list(rows) == ["start", "recipe", "lr=5e-4", "batch_size=4, ema_decay=0.998"]
    assert [row["iterations"] for row in rows.values()] == [0, 2, 2, 1]  # the recipe's batch is 2
    assert [row["samples"] for row in rows.values()] == [0, 4, 4, 4]
    assert rows["batch_size=4, ema_decay=0.998"]["changes"] == {"batch_size": 4, "ema_decay": 0.998}
    assert rows["start"]["select_gain_db"] == start_gain  # scored as the chunk's own validation scored it
    # The recipe's arm is the campaign's next chunk: kept, written back and logged.
    assert campaigns.state_iteration(campaign.state_path("sr")) == 4
    assert campaign.log_lines()[-1]["iterations"] == 4
    recipe = torch.load(campaign.run_dir("sr") / "checkpoint.pth", weights_only=False)
    arm = torch.load(campaign.runs / "compare" / "sr-from-2" / "lr_5e-4" / "checkpoint.pth", weights_only=False)
    assert arm["iteration"] == 4 and json.loads(arm["config"])["lr"] == 5e-4
    assert any(not torch.equal(arm["model_raw"][k], v) for k, v in recipe["model_raw"].items())
    table = capsys.readouterr().out
    assert "| recipe | - | 2 | 4 | 0 |" in table and "| lr=5e-4 | lr = 0.0005 | 2 | 4 | 0 |" in table
    assert rows["start"]["minutes"] is None and all(row["minutes"] >= 0 for row in list(rows.values())[1:])


def test_a_comparison_on_grid_crops_gives_each_arm_its_gain_per_family(campaign, capsys):
    campaign.recipe_path.write_text(campaign.recipe_path.read_text().replace("val_items = 2", 'val_items = 2\n'
                                                                             'val_crops = "grid"'))
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    at_start = dict(campaign.log_lines()[-1]["val_group_curve"])[2]
    comparison = campaigns.compare_recipes(campaign, "sr", {"lr=5e-4": {"lr": 5e-4}}, samples_per_arm=4)
    rows = {row["arm"]: row for row in comparison["arms"]}
    assert {"all": rows["start"]["select_gain_db"], **rows["start"]["select_groups"]} == at_start
    assert all({"family none", "family shake", "input png"} <= set(row["select_groups"]) for row in rows.values())
    table = campaigns.format_comparison(comparison).splitlines()
    assert table[table.index("") + 1].startswith("| arm | family defocus |") and table[-1].startswith("| lr=5e-4 |")


def test_a_stopped_comparison_finishes_when_run_again(campaign, monkeypatch):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    monkeypatch.setattr(campaigns.StopRequest, "requested", lambda self: True)
    with pytest.raises(campaigns.ComparisonStopped):
        campaigns.compare_recipes(campaign, "sr", {"lr=5e-4": {"lr": 5e-4}}, samples_per_arm=4)
    assert campaigns.local_iteration(campaign, "sr") == 3  # one iteration, then the stop, with a checkpoint
    monkeypatch.undo()
    comparison = campaigns.compare_recipes(campaign, "sr", {"lr=5e-4": {"lr": 5e-4}}, samples_per_arm=4)
    assert comparison["start_iteration"] == 2
    assert [row["iterations"] for row in comparison["arms"]] == [0, 2, 2]


def test_a_new_comparison_never_reuses_the_start_of_another(campaign, monkeypatch, capsys):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    monkeypatch.setattr(campaigns.StopRequest, "requested", lambda self: True)
    with pytest.raises(campaigns.ComparisonStopped):
        campaigns.compare_recipes(campaign, "sr", {"lr=5e-4": {"lr": 5e-4}}, samples_per_arm=4)
    monkeypatch.undo()
    args = ["campaign", "--root", str(campaign.root), "--runs", str(campaign.runs), "compare", "sr",
            "--arm", "ema_decay=0.99", "--iterations", "2"]
    assert edpn(args) == 2  # the unfinished comparison is named, not trained on with other arms
    err = capsys.readouterr().err
    assert "unfinished comparison of other arms (lr=5e-4)" in err and len(err.strip().splitlines()) == 1
    assert campaigns.compare_recipes(campaign, "sr", {"lr=5e-4": {"lr": 5e-4}}, samples_per_arm=4)[
        "start_iteration"] == 2
    later = campaigns.compare_recipes(campaign, "sr", {"ema=0.99": {"ema_decay": 0.99}}, samples_per_arm=4)
    assert later["start_iteration"] == 4  # from where the first comparison's recipe arm left the campaign
    assert sorted(p.name for p in (campaign.runs / "compare").iterdir()) == ["sr-from-2", "sr-from-4"]


@pytest.mark.parametrize("spec, message", [("preset = 'paper'", "not preset"), ("lr", "setting=value"),
                                           ("lr = 'fast'", "lr")])
def test_an_arm_that_is_not_a_training_change_is_one_clear_line(campaign, capsys, spec, message):
    args = ["campaign", "--root", str(campaign.root), "--runs", str(campaign.runs), "compare", "sr", "--arm", spec,
            "--iterations", "2"]
    assert edpn(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_recipe_change_applies_to_the_next_chunk_of_the_same_session(campaign):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    recipe = campaign.recipe_path.read_text()
    campaign.recipe_path.write_text(recipe.replace("batch_size = 2", "batch_size = 2\nlr = 1e-3"))
    trainer = campaigns.open_trainer(campaign, "sr")
    assert trainer.iteration == 2 and trainer.optimizer.state  # still this session's checkpoint, Adam and all
    assert trainer.cfg.lr == 1e-3


def train_arm(campaign: Campaign, out_dir: Path, until: int, *options: str) -> Path:
    """An arm trained beside the campaign as a session trains one: `edpn train --resume` of its checkpoint."""
    assert edpn(["train", "--resume", str(campaign.run_dir("sr") / "checkpoint.pth"), "--out-dir", str(out_dir),
                 "--until", str(until), "--val-every", "1", "--set", "keep_validated=true", "--no-progress",
                 *options]) == 0
    return out_dir / "checkpoint.pth"


def test_an_adopted_arm_continues_the_campaign_with_its_iterations_logged_and_its_validations_shippable(
        campaign, tmp_path, capsys):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    arm = train_arm(campaign, tmp_path / "arm", 4)
    args = ["campaign", "--root", str(campaign.root), "--runs", str(campaign.runs), "adopt", "sr", str(arm),
            "--note", "restarted from the EMA at 1"]
    assert edpn(args) == 0
    assert "| sr |" in capsys.readouterr().err
    line = campaign.log_lines()[-1]
    assert (line["iterations"], line["chunk_iterations"], line["note"]) == (4, 2, "restarted from the EMA at 1")
    assert [point[0] for point in line["val_curve"]] == [3, 4]  # the arm's own validations
    assert campaigns.state_iteration(campaign.state_path("sr")) == 4
    assert all(campaign.validated_path("sr", i).exists() for i in (3, 4))
    trainer = campaigns.open_trainer(campaign, "sr")
    adopted = torch.load(arm, weights_only=False)
    assert trainer.iteration == 4 and trainer.optimizer.state
    assert all(torch.equal(v, adopted["model_raw"][k]) for k, v in trainer.model.state_dict().items())
    assert campaigns.run_chunk(campaign, "sr", minutes=60, until=5)["iterations"] == 5


def test_an_arm_started_a_session_after_the_campaigns_checkpoint_is_logged_with_its_own_minutes(campaign, tmp_path):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    checkpoint = campaign.run_dir("sr") / "checkpoint.pth"
    three_hours_ago = time.time() - 3 * 3600  # the last session's end
    os.utime(checkpoint, (three_hours_ago, three_hours_ago))
    arm = train_arm(campaign, tmp_path / "arm", 4)
    arm_seconds = (torch.load(arm, weights_only=False)["training_seconds"]
                   - torch.load(checkpoint, weights_only=False)["training_seconds"])
    line = campaigns.adopt_arm(campaign, "sr", arm)
    assert 0 < arm_seconds < 300
    assert line is not None and line["wall_minutes"] == pytest.approx(arm_seconds / 60, abs=0.06)  # not 180


def test_an_arm_the_campaign_cannot_go_on_from_is_refused_in_one_line_and_nothing_changes(campaign, tmp_path, capsys):
    campaigns.run_chunk(campaign, "sr", minutes=60, until=2)
    other_batch = train_arm(campaign, tmp_path / "batch4", 4, "--batch-size", "4")
    behind = train_arm(campaign, tmp_path / "behind", 6)
    args = ["campaign", "--root", str(campaign.root), "--runs", str(campaign.runs), "adopt", "sr"]

    def refused(arm: Path, message: str) -> None:
        state, lines = campaign.state_path("sr").read_bytes(), campaign.log_lines()
        capsys.readouterr()
        assert edpn([*args, str(arm)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert campaign.state_path("sr").read_bytes() == state and campaign.log_lines() == lines

    refused(other_batch, "batch_size 4 (recipe 2); change")
    campaigns.run_chunk(campaign, "sr", minutes=60, until=4)  # the campaign went on after the arm's start
    refused(behind, "did not continue the campaign's checkpoint at iteration 4")
    assert campaigns.local_iteration(campaign, "sr") == 4
