"""The training campaign behind the shipped weights: one long run per task, carried across sessions on whatever
CPU each session has.

Between sessions the campaign lives in the repository (``campaign/``): the recipe every session follows, per task
the fp32 weights and their EMA with the iteration they reached (a few MB: Adam's moments are not kept, so a new
machine's optimizer starts afresh from them), and a log with one line per chunk of training. Within a session a
chunk trains exactly as ``edpn train`` does and checkpoints to ``runs/campaign/TASK``, so a chunk restarted in the
same session resumes bit for bit; writing the state back reads that checkpoint, so it can be done at any moment.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import tomllib
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..config import TASK_SCALES, TASKS, Task
from ..durable import replace_durably
from .checkpoint import newest_checkpoint, previous_checkpoint
from .config import BOOKKEEPING_SETTINGS, NETWORK_SETTINGS, TrainConfig
from .train import StopRequest, Trainer
from .validation import baseline_scores, build_val_items, gains_over, group_gains, items_digest, validate

try:
    import fcntl
except ImportError:  # Windows: no lock; the campaign runs on the project's Linux machines
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("edpn.campaign")

STATE_FORMAT = "edpn-campaign-state-1"
# CPU features that decide which recipe is fastest (docs/BENCHMARKS.md); the log names those a machine has.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


@dataclass(frozen=True)
class Campaign:
    """Where a campaign keeps its committed state (root) and its session-local checkpoints (runs)."""

    root: Path = Path("campaign")
    runs: Path = Path("runs/campaign")

    @property
    def recipe_path(self) -> Path:
        return self.root / "recipe.toml"

    @property
    def log_path(self) -> Path:
        return self.root / "log.jsonl"

    def state_path(self, task: Task) -> Path:
        return self.root / f"{task}.safetensors"

    def run_dir(self, task: Task) -> Path:
        return self.runs / task

    def shipped_scores_path(self, task: Task) -> Path:
        """The shipped file's gains on the selection crops (shipped_select_gains), kept for the session."""
        return self.run_dir(task) / "shipped-select.json"

    def validated_path(self, task: Task, iteration: int) -> Path:
        """The EMA a chunk validated at `iteration` (Trainer.validated_path), a candidate `ship` can take."""
        return self.run_dir(task) / "validated" / f"{iteration}.safetensors"

    def chunk_marker(self, task: Task) -> Path:
        """Where the current chunk started (iteration, time): what the next log line's wall time counts from."""
        return self.run_dir(task) / "chunk.json"

    def tasks(self) -> list[Task]:
        return [task for task in TASKS if task in self.recipe_tables()]

    def recipe_tables(self) -> dict[str, dict]:
        try:
            with open(self.recipe_path, "rb") as f:
                return tomllib.load(f)
        except FileNotFoundError:
            raise ValueError(f"{self.recipe_path}: no campaign recipe there") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{self.recipe_path}: not valid TOML ({exc})") from None

    def settings(self, task: Task) -> dict:
        """The recipe's settings for the task, training into this campaign's run folder."""
        tables = self.recipe_tables()
        if task not in tables:
            raise ValueError(f"{self.recipe_path}: no [{task}] table")
        return {**tables[task], "task": task, "out_dir": str(self.run_dir(task)), "keep_validated": True}

    def config(self, task: Task) -> TrainConfig:
        try:
            return TrainConfig().updated(**self.settings(task))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.recipe_path} [{task}]: {exc}") from None

    def log_lines(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------- state files
def write_state(path: Path, trainer_state: dict) -> None:
    """The weights the optimizer steps (raw) and their EMA in fp32, with what continuing needs in the metadata."""
    raw = trainer_state.get("model_raw", trainer_state["model"])
    tensors = {f"raw.{k}": v.float().contiguous() for k, v in raw.items()}
    tensors.update({f"ema.{k}": v.float().contiguous() for k, v in trainer_state["model"].items()})
    metadata = {"format": STATE_FORMAT, "iteration": str(trainer_state["iteration"]),
                "schedule_start": str(trainer_state.get("schedule_start", 0)),
                "best": json.dumps(trainer_state.get("best", {})), "config": trainer_state["config"],
                "date": datetime.now(timezone.utc).date().isoformat()}
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temp), metadata=metadata)
    replace_durably(temp, path)


def state_iteration(path: Path) -> int | None:
    """The iteration a committed state reached, read from its header alone; None when there is no state."""
    if not path.exists():
        return None
    return int(_state_metadata(path)["iteration"])


def _state_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a campaign state ({exc})") from None
    if metadata.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a campaign state (format {metadata.get('format')!r})")
    return metadata


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, str]]:
    """(raw weights, EMA weights, metadata) of a committed state, every value checked finite."""
    metadata = _state_metadata(path)
    tensors = load_file(str(path))
    bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: non-finite values in {bad[0]} and {len(bad) - 1} more")
    split: dict[str, dict[str, torch.Tensor]] = {"raw": {}, "ema": {}}
    for key, value in tensors.items():
        kind, _, name = key.partition(".")
        if kind not in split:
            raise ValueError(f"{path}: unexpected tensor {key}")
        split[kind][name] = value
    return split["raw"], split["ema"], metadata


# ----------------------------------------------------------------------------------------------- one chunk
def open_trainer(campaign: Campaign, task: Task) -> Trainer:
    """The newest of: this session's checkpoint (resumed bit for bit), the committed state (weights, EMA and
    iteration; a fresh optimizer), or the recipe's starting weights (the campaign's first chunk)."""
    cfg = campaign.config(task)
    local = local_checkpoint(campaign, task)
    committed = state_iteration(campaign.state_path(task))
    if local is not None and local[0]["iteration"] >= (committed or 0):
        return resumed_trainer(cfg, campaign.run_dir(task) / "checkpoint.pth")
    if committed is None:
        return Trainer(cfg)
    raw, ema, metadata = read_state(campaign.state_path(task))
    trainer = Trainer(cfg.updated(init_weights=""))
    try:
        trainer.continue_from(raw, ema, int(metadata["iteration"]), int(metadata["schedule_start"]),
                              json.loads(metadata["best"]))
    except RuntimeError as exc:  # load_state_dict: missing, extra or misshapen tensors
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{campaign.state_path(task)}: does not fit the recipe's network ({reason})") from None
    logger.info("%s: continuing the committed state at iteration %d (fresh optimizer)", task, trainer.iteration)
    return trainer


def resumed_trainer(cfg: TrainConfig, checkpoint: Path) -> Trainer:
    """A checkpoint's weights, EMA, optimizer, iteration and random state trained on with `cfg`: the recipe as it
    reads now decides the schedule, as it does for a fresh clone continuing the committed state."""
    path, state, _ = newest_checkpoint(checkpoint)
    trainer = Trainer(cfg)
    trainer.restore(state, path)
    logger.info("%s: resumed %s at iteration %d", cfg.task, path, trainer.iteration)
    return trainer


def local_checkpoint(campaign: Campaign, task: Task) -> tuple[dict, float] | None:
    """This session's newest readable checkpoint of the task (checkpoint.pth, else the one kept before it) and
    when it was written."""
    path = campaign.run_dir(task) / "checkpoint.pth"
    if not path.exists() and not previous_checkpoint(path).exists():
        return None
    found, state, _ = newest_checkpoint(path)
    try:
        written = found.stat().st_mtime
    except FileNotFoundError:  # a running chunk replaced it since: the state read is from just now
        written = time.time()
    return state, written


def mark_chunk_start(campaign: Campaign, task: Task, iteration: int, started: float | None = None) -> None:
    marker = campaign.chunk_marker(task)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"iteration": iteration, "started": time.time() if started is None else started}))


def run_chunk(campaign: Campaign, task: Task, minutes: float, until: int | None = None) -> dict | None:
    """Train the task for `minutes` or up to iteration `until` (SIGTERM or Ctrl+C stop it early, with a
    checkpoint), then write the state back and log the chunk. Returns the log line, or None when nothing was
    trained."""
    trainer = open_trainer(campaign, task)
    log_reference_point(campaign, task, trainer)
    shipped_select_gains(campaign, task)
    mark_chunk_start(campaign, task, trainer.iteration)
    stop = StopRequest()
    with stop.installed():
        trainer.fit(until=until, show_progress=False, time_limit_s=minutes * 60, stop=stop.requested)
    return save_state(campaign, task)


def save_state(campaign: Campaign, task: Task, note: str = "") -> dict | None:
    """Write this session's latest checkpoint back to the committed state and log what it added (with `note`, what
    the numbers alone do not say); None when both are already as new. Safe beside a running chunk (saves of a task
    take turns). The state is written before its log line, so a crash between the two leaves the line to the next
    save."""
    with _exclusive(campaign.state_path(task).with_name(campaign.state_path(task).name + ".lock")):
        local = local_checkpoint(campaign, task)
        committed = state_iteration(campaign.state_path(task))
        if local is None or (committed is not None and committed > local[0]["iteration"]):
            return None
        state, checkpoint_time = local
        logged = [line["iterations"] for line in campaign.log_lines() if line["task"] == task]
        if committed == state["iteration"] and logged and logged[-1] == committed:
            return None
        marker = campaign.chunk_marker(task)
        start = json.loads(marker.read_text()) if marker.exists() else {"iteration": committed or 0,
                                                                         "started": checkpoint_time}
        if committed != state["iteration"]:
            write_state(campaign.state_path(task), state)
        cfg = TrainConfig.from_checkpoint_json(state["config"])
        scores = state.get("latest_scores") or {}
        line = {
            **_line_head(task, state["iteration"]),
            "chunk_iterations": state["iteration"] - start["iteration"],
            "wall_minutes": round((checkpoint_time - start["started"]) / 60, 1),
            "lr": cfg.learning_rate(state["iteration"] - 1, state.get("schedule_start", 0)),
            "loss": _rounded(state.get("recent_loss", math.nan), 5),
            "val_gain_db": _rounded(scores.get("gain_y", math.nan), 3),
            "val_iteration": scores.get("iteration"),
            "val_curve": [[iteration, round(gain, 3)] for iteration, gain in state.get("gain_curve", [])
                          if start["iteration"] < iteration <= state["iteration"] and math.isfinite(gain)],
            "val_group_curve": [[iteration, _rounded_groups(groups)]
                                for iteration, groups in state.get("group_curve", [])
                                if start["iteration"] < iteration <= state["iteration"]],
            "select": select_digest(build_val_items(cfg)),
            **({"note": note} if note else {}),
        }
        append_log(campaign, line)
        mark_chunk_start(campaign, task, state["iteration"], checkpoint_time)
        return line


def log_reference_point(campaign: Campaign, task: Task, trainer: Trainer) -> None:
    """When no line has scored these selection crops yet (the campaign's start, or new photos, crop picker or
    mix), a line of the weights the chunk starts from scored on them: the point later gains compare with, and the
    best the chunk's validations must beat."""
    items = build_val_items(trainer.cfg)
    selection = select_digest(items)
    if any(line["task"] == task and line["select"] == selection for line in campaign.log_lines()):
        return
    scores = trainer.validate_now(items) if items else {}
    groups = group_gains(scores)
    trainer.best = {"iteration": trainer.iteration, **scores} if scores else {}  # a best on other crops means nothing
    if trainer.iteration == 0:
        note = f"starting weights: {trainer.cfg.init_weights or 'random initialisation'}"
    else:
        note = "these weights scored on new selection crops"
    append_log(campaign, {**_line_head(task, trainer.iteration), "chunk_iterations": 0, "wall_minutes": 0.0,
                          "lr": None, "loss": None, "val_gain_db": _rounded(scores.get("gain_y", math.nan), 3),
                          "val_iteration": trainer.iteration, "select": selection, "note": note,
                          "val_group_curve": [[trainer.iteration, _rounded_groups(groups)]] if groups else []})


def shipped_select_gains(campaign: Campaign, task: Task) -> dict | None:
    """The shipped file's gain per group on the selection crops: the bar a validation must clear on `select`
    before its EMA is worth a report run (format_group_curve). Scored again only when the file or the crops
    change (their digests); None without grid crops or a shipped file."""
    from ..model_io import load_model
    from ..resources import shipped_weights

    cfg = campaign.config(task)
    shipped = shipped_weights(task).get(cfg.preset)
    items = build_val_items(cfg) if cfg.val_crops == "grid" else []
    if shipped is None or not items:
        return None
    selection = select_digest(items)
    kept = kept_shipped_gains(campaign, task)
    if kept is not None and kept["select"] == selection:
        return kept
    key = {"file": shipped.name, "sha256": _file_digest(shipped), "select": selection}
    model, _ = load_model(shipped)
    scale = TASK_SCALES[task]
    scores = validate(model, items, torch.device("cpu"), scale)
    gains = group_gains({**scores, **gains_over(scores, baseline_scores(items, task, scale))})
    result = {**key, "gains": _rounded_groups(gains)}
    path = campaign.shipped_scores_path(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def kept_shipped_gains(campaign: Campaign, task: Task) -> dict | None:
    """shipped_select_gains as this session kept them, when they are still of the shipped file (a ship replaces
    it); None otherwise."""
    from ..resources import shipped_weights

    path = campaign.shipped_scores_path(task)
    shipped = shipped_weights(task).get(campaign.config(task).preset)
    if shipped is None or not path.exists():
        return None
    kept = json.loads(path.read_text())
    return kept if kept.get("file") == shipped.name and kept.get("sha256") == _file_digest(shipped) else None


def _shown(argument: str) -> str:
    """A command's argument as a model card quotes it: paths inside the working folder relative to it."""
    path = Path(argument)
    return str(path.relative_to(Path.cwd())) if path.is_absolute() and path.is_relative_to(Path.cwd()) else argument


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _line_head(task: Task, iteration: int) -> dict:
    return {"task": task, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "machine": machine_description(), "iterations": iteration}


def _rounded(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def _rounded_groups(groups: Mapping[str, float]) -> dict[str, float | None]:
    return {group: _rounded(gain, 3) for group, gain in groups.items()}


def append_log(campaign: Campaign, line: dict) -> None:
    """The log is rewritten whole and replaced atomically, so a crash leaves it as it was or with the line; the
    tasks' processes take turns (a lock file), so two chunks ending together both keep their line."""
    campaign.log_path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(campaign.log_path.with_name(campaign.log_path.name + ".lock")):
        old = campaign.log_path.read_text() if campaign.log_path.exists() else ""
        temp = campaign.log_path.with_name(campaign.log_path.name + ".tmp")
        temp.write_text(old + json.dumps(line) + "\n")
        replace_durably(temp, campaign.log_path)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def select_digest(items: list[dict]) -> str:
    """Which crops validation scores (validation.items_digest; empty without validation), so gains are compared
    only between lines that scored the same crops of the same photos."""
    return items_digest(items) if items else ""


def machine_description() -> str:
    """The CPU's model and the features that set its speed, e.g. 'AMD EPYC, 2 cores, avx2 avx512_bf16'."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    have = " ".join(flag for flag in SPEED_FLAGS if flag in flags) or "no avx2"
    return f"{model}, {os.cpu_count()} cores, {have}"


# ----------------------------------------------------------------------------------------------- the campaign
def run_campaign(campaign: Campaign, minutes: float, tasks: Sequence[Task] | None = None,
                 launch: Callable[[list[str], dict, Path], subprocess.Popen] | None = None) -> int:
    """One niced child process per task whose schedule has not ended, side by side, with the cores shared out
    among the recipe's tasks (on 2 cores, one thread each: the fastest CPU recipe measured, docs/BENCHMARKS.md). A
    finished task's core is left to the session: a two-thread process collapses when the cores are shared with
    other work. Each child logs to its run folder's chunk.log; returns the worst exit status."""
    recipe_tasks = campaign.tasks()
    threads = max(1, (os.cpu_count() or 1) // len(recipe_tasks))
    tasks = [task for task in tasks or recipe_tasks if not schedule_ended(campaign, task)]
    if not tasks:
        logger.info("every task's schedule has ended: nothing to train")
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    children = []
    for task in tasks:
        campaign.run_dir(task).mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "edpn_core.cli", "campaign", "--root", str(campaign.root), "--runs",
                   str(campaign.runs), "chunk", task, "--minutes", str(minutes)]
        children.append((launch or _launch_niced)(command, env, campaign.run_dir(task) / "chunk.log"))
        logger.info("%s: training for %g minutes, %d thread(s), log in %s", task, minutes, threads,
                    campaign.run_dir(task) / "chunk.log")
    try:
        return max(child.wait() for child in children)
    except KeyboardInterrupt:
        for child in children:
            child.send_signal(signal.SIGTERM)
        return max(child.wait() for child in children)


def schedule_ended(campaign: Campaign, task: Task) -> bool:
    """Whether the task reached its recipe's last iteration (this session's checkpoint or the committed state)."""
    reached = max(local_iteration(campaign, task), state_iteration(campaign.state_path(task)) or 0)
    ended = reached >= campaign.config(task).iterations
    if ended:
        logger.info("%s: trained to the end of its schedule (iteration %d): not started", task, reached)
    return ended


def _launch_niced(command: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "a") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_lowest_priority)


def _lowest_priority() -> None:
    os.nice(19)


# ----------------------------------------------------------------------------------------------- recipe comparison
RECIPE_ARM = "recipe"


def parse_arm(spec: str) -> dict:
    """'lr = 5e-4, batch_size = 8' -> {'lr': 0.0005, 'batch_size': 8}: the recipe's own TOML syntax."""
    try:
        changes = tomllib.loads("\n".join(part for part in spec.split(",") if part.strip()))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"arm {spec!r}: write it as setting=value[,setting=value] ({exc})") from None
    if not changes:
        raise ValueError(f"arm {spec!r}: no settings")
    touched = sorted(set(changes) & {*NETWORK_SETTINGS, "out_dir", "data", "val_data"})
    if touched:
        raise ValueError(f"arm {spec!r}: an arm changes how the network trains, not {', '.join(touched)}")
    return changes


def compare_recipes(campaign: Campaign, task: Task, arms: Mapping[str, dict], samples_per_arm: int) -> dict:
    """Train the recipe and each arm (changes to it) from the same point on the same number of training samples
    (iterations x batch, so a bigger batch runs fewer iterations for the same compute), then score every EMA on
    the selection crops in one run. The recipe's arm is the campaign's next chunk, so its training is kept; the
    other arms train in runs/campaign/compare/TASK and are rerun-safe (an interrupted comparison resumes there).
    Returns the comparison: per arm its changes, iterations and select gain. A finished comparison's folder is
    renamed TASK-from-START, so the next one starts from the campaign's state of its own day."""
    folder = campaign.runs / "compare" / task
    _claim_comparison(folder, {"arms": dict(arms), "samples_per_arm": samples_per_arm})
    start_path = folder / "start.pth"
    if not start_path.exists():
        open_trainer(campaign, task).save_checkpoint(start_path)
    start_state = newest_checkpoint(start_path)[1]
    start = start_state["iteration"]
    recipe = campaign.config(task)
    configs = {RECIPE_ARM: recipe, **{name: _arm_config(recipe, changes, folder / _slug(name))
                                      for name, changes in arms.items()}}
    targets = {name: start + max(1, round(samples_per_arm / cfg.batch_size)) for name, cfg in configs.items()}
    minutes: dict[str, float] = {}  # training time of the arms trained by this call (the machine's other load included)
    started = time.monotonic()
    if local_iteration(campaign, task) < targets[RECIPE_ARM]:
        run_chunk(campaign, task, minutes=math.inf, until=targets[RECIPE_ARM])
        minutes[RECIPE_ARM] = (time.monotonic() - started) / 60
    stop = StopRequest()
    recipe_done = local_iteration(campaign, task) >= targets[RECIPE_ARM]
    with stop.installed():
        for name, cfg in configs.items():
            if name != RECIPE_ARM and recipe_done and not stop.signalled:
                started = time.monotonic()
                if _train_arm(cfg, start_path, targets[name], stop.requested):
                    minutes[name] = (time.monotonic() - started) / 60
    if stop.signalled or not recipe_done:
        logger.warning("%s: the comparison stopped before its end; the same command finishes it", task)
        raise ComparisonStopped
    items = build_val_items(recipe)
    baseline = baseline_scores(items, task, TASK_SCALES[task])

    def scored(checkpoint: Path, iteration: int) -> dict:
        gains = _select_gains(checkpoint, iteration, recipe, items, baseline)
        return {"select_gain_db": gains.pop("all"), "select_groups": gains}

    rows = [{"arm": "start", "changes": {}, "iterations": 0, "samples": 0, "minutes": None,
             **scored(start_path, start)}]
    for name, cfg in configs.items():
        rows.append({"arm": name, "changes": dict(arms.get(name, {})), "iterations": targets[name] - start,
                     "samples": (targets[name] - start) * cfg.batch_size,
                     **scored(Path(cfg.out_dir) / "checkpoint.pth", targets[name]),
                     "minutes": round(minutes[name], 1) if name in minutes else None})
    head = _line_head(task, start)
    folder.rename(folder.with_name(f"{task}-from-{start}"))  # unique: the recipe arm moved the campaign past start
    return {"task": task, "date": head["date"], "machine": head["machine"], "start_iteration": start,
            "select": select_digest(items), "arms": rows}


def _claim_comparison(folder: Path, spec: dict) -> None:
    """One comparison per task at a time: a rerun of the same arms finishes it; other arms are refused rather
    than trained from its start point, which the campaign has left since."""
    spec_path = folder / "arms.json"
    wanted = json.loads(json.dumps(spec))
    if spec_path.exists() or (folder / "start.pth").exists():
        stored = json.loads(spec_path.read_text()) if spec_path.exists() else None
        if stored != wanted:
            arms = ", ".join(stored["arms"]) if stored else "not recorded"
            raise ValueError(f"{folder} holds an unfinished comparison of other arms ({arms}): run it again with "
                             f"them to finish it, or remove the folder to start a new one")
        return
    folder.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(wanted))


class ComparisonStopped(KeyboardInterrupt):
    """A stop request ended the comparison early: what trained is checkpointed, nothing is scored."""


def adopt_arm(campaign: Campaign, task: Task, checkpoint: Path, note: str = "") -> dict | None:
    """Continue the campaign from an arm trained beside it (`edpn train --resume` of the campaign's checkpoint into
    another folder) instead of its own chunk: the arm's checkpoint becomes the session's, its validated EMAs
    become shippable, and the log's line counts the arm's iterations and wall time. Refused unless the arm went on
    from the campaign's latest state with the recipe as it reads now, so no campaign iteration is dropped and the
    next chunk trains as the arm did. Stop the task's chunk first. Returns the log line, which carries `note` (say
    there what the arm did that its settings do not show, e.g. weights it started from)."""
    save_state(campaign, task)  # the campaign's own iterations up to the arm's start are logged as theirs
    local = local_checkpoint(campaign, task)
    if local is None:
        raise ValueError(f"{campaign.run_dir(task)}: no checkpoint of this session for an arm to have continued")
    own, written = local
    arm_path, arm, _ = newest_checkpoint(checkpoint)
    if arm["iteration"] <= own["iteration"]:
        raise ValueError(f"{arm_path}: at iteration {arm['iteration']}, not past the campaign's "
                         f"{own['iteration']}")
    history = [tuple(point) for point in own.get("gain_curve", [])]
    if [tuple(point) for point in arm.get("gain_curve", [])][:len(history)] != history \
            or arm.get("schedule_start", 0) != own.get("schedule_start", 0):
        raise ValueError(f"{arm_path}: did not continue the campaign's checkpoint at iteration {own['iteration']} "
                         f"(its validations or schedule differ)")
    arm_cfg, recipe = TrainConfig.from_checkpoint_json(arm["config"]), campaign.config(task)
    differ = [f"{f.name} {getattr(arm_cfg, f.name)!r} (recipe {getattr(recipe, f.name)!r})"
              for f in dataclasses.fields(recipe)
              if f.name not in BOOKKEEPING_SETTINGS and getattr(arm_cfg, f.name) != getattr(recipe, f.name)]
    if differ:
        raise ValueError(f"{arm_path}: trained with {', '.join(differ)}; change {campaign.recipe_path} first, "
                         f"so that the campaign goes on as the arm trained")
    for validated in sorted((arm_path.parent / "validated").glob("*.safetensors")):
        if own["iteration"] < int(validated.stem) <= arm["iteration"]:
            target = campaign.validated_path(task, int(validated.stem))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(validated, target)
    destination = campaign.run_dir(task) / "checkpoint.pth"
    temp = destination.with_suffix(".adopt")
    shutil.copy2(arm_path, temp)
    replace_durably(temp, destination, previous_checkpoint(destination))
    arm_written = destination.stat().st_mtime
    # The arm's own clock (checkpoints since 2026-12-05): it may have started sessions after the campaign's checkpoint.
    started = (arm_written - (arm["training_seconds"] - own.get("training_seconds", 0.0))
               if "training_seconds" in arm else written)
    mark_chunk_start(campaign, task, own["iteration"], started)
    return save_state(campaign, task, note)


def local_iteration(campaign: Campaign, task: Task) -> int:
    local = local_checkpoint(campaign, task)
    return local[0]["iteration"] if local else -1


def _arm_config(recipe: TrainConfig, changes: dict, out_dir: Path) -> TrainConfig:
    """The recipe with the arm's changes, training into its own folder with no validation of its own (all arms
    are scored together on the recipe's crops)."""
    try:
        return recipe.updated(**changes, out_dir=str(out_dir), val_data="", tensorboard=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"arm {changes}: {exc}") from None


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _train_arm(cfg: TrainConfig, start_path: Path, until: int, stop: Callable[[], bool]) -> bool:
    """Train the arm up to `until`, from its own checkpoint when an earlier call began it; whether it trained."""
    own = Path(cfg.out_dir) / "checkpoint.pth"
    trainer = resumed_trainer(cfg, own if own.exists() or previous_checkpoint(own).exists() else start_path)
    if trainer.iteration >= until:
        return False
    trainer.fit(until=until, show_progress=False, stop=stop)
    return True


def _select_gains(checkpoint: Path, iteration: int, recipe: TrainConfig, items: list[dict],
                  baseline: dict[str, float]) -> dict[str, float]:
    """The select gain of the EMA in the checkpoint, overall ("all") and, on grid crops, per family and input
    format; the checkpoint must have reached `iteration` exactly (one that moved on, or stopped short, would not be
    the arm's)."""
    path, state, _ = newest_checkpoint(checkpoint)
    if state["iteration"] != iteration:
        raise ValueError(f"{path}: at iteration {state['iteration']}, the comparison needs {iteration}")
    from ..model_io import build_model

    network = build_model(recipe.preset, recipe.task, **recipe.model_overrides)
    network.load_state_dict(state["model"])
    gains = gains_over(validate(network, items, torch.device("cpu"), TASK_SCALES[recipe.task]), baseline)
    return {key: round(value, 3) for key, value in {"all": gains["gain_y"], **group_gains(gains)}.items()}


def format_comparison(comparison: dict) -> str:
    """The comparison as a Markdown table, the recipe's arm the reference; on grid crops a second table of each
    arm's gain per family and input format."""
    rows = comparison["arms"]
    recipe = next(row for row in rows if row["arm"] == RECIPE_ARM)["select_gain_db"]
    lines = ["| arm | changes | iterations | samples | minutes | select gain dB | vs recipe dB |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        changes = ", ".join(f"{k} = {v}" for k, v in row["changes"].items()) or "-"
        minutes = "-" if row.get("minutes") is None else f"{row['minutes']:.0f}"
        lines.append(f"| {row['arm']} | {changes} | {row['iterations']:,} | {row['samples']:,} | {minutes} | "
                     f"{row['select_gain_db']:+.3f} | {row['select_gain_db'] - recipe:+.3f} |")
    groups = _in_table_order({group for row in rows for group in row.get("select_groups", {})})
    if groups:
        lines += ["", "| arm | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
        lines += [f"| {row['arm']} | " + " | ".join(f"{row['select_groups'][g]:+.3f}" if g in row["select_groups"]
                                                    else "-" for g in groups) + " |" for row in rows]
    return "\n".join(lines)


SHIP_TOLERANCE_DB = 0.05  # the noise of Y-PSNR means over a few dozen crops (docs/TRAINING_CAMPAIGN.md)


def shipping_verdict(groups: Mapping[str, dict], candidate: str, shipped: str,
                     tolerance_db: float = SHIP_TOLERANCE_DB) -> list[str]:
    """Why the candidate may not replace the shipped weights, from one `edpn eval` run that scored both (an
    empty list: ship it). It must be better overall and on unblurred inputs, and no blur family or input format
    may lose more than the tolerance: a rule that lets a real gain through despite noise on one family."""
    def gain(group: str) -> float:
        scores = groups[group]["scores"]
        return scores[candidate]["psnr_y"] - scores[shipped]["psnr_y"]

    must_gain = ("all", "family none")
    reasons = [f"{group}: {gain(group):+.3f} dB, not better" for group in must_gain if gain(group) <= 0]
    reasons += [f"{group}: {gain(group):+.3f} dB, worse by more than {tolerance_db} dB" for group in groups
                if group.startswith(("family ", "input ")) and group not in must_gain and gain(group) < -tolerance_db]
    return reasons


def ship(campaign: Campaign, task: Task, photos: Path, shipped: Path, scores_json: Path, crop: int = 256,
         evaluate: Callable[[list[str]], int] | None = None, iteration: int | None = None) -> list[str]:
    """Score the committed state's EMA (or the one this session validated at `iteration`), rounded to float16 as
    shipped, beside the shipped file in one `edpn eval` run on `photos` (the report set), and replace the shipped
    file when shipping_verdict finds nothing against it. Returns the verdict's reasons (empty when shipped); the
    scores stay in scores_json either way."""
    from ..cli import main as edpn
    from ..model_io import build_model, load_model, save_weights

    if iteration is None:
        _, ema, metadata = read_state(campaign.state_path(task))
        cfg = TrainConfig.from_checkpoint_json(metadata["config"])
        network = build_model(cfg.preset, task, **cfg.model_overrides)
        network.load_state_dict(ema)
        reached, trained = metadata["iteration"], metadata["date"]
    else:
        validated = campaign.validated_path(task, iteration)
        if not validated.exists():
            raise ValueError(f"{validated}: no EMA validated at iteration {iteration} this session "
                             f"(`edpn campaign log --groups` lists the validations)")
        network, info = load_model(validated)
        cfg = campaign.config(task)
        reached, trained = str(iteration), info.metadata.get("date", "")
    candidate_path = campaign.run_dir(task) / "candidate.safetensors"
    details = {"iterations": reached, "date": trained, "weights": f"ema {cfg.ema_decay}",
               "training_data": cfg.data, "recipe": json.dumps(campaign.recipe_tables()[task]),
               "campaign": f"{campaign.root.name}/ (docs/TRAINING_CAMPAIGN.md)"}
    save_weights(network, candidate_path, cfg.preset, half=True, **details)
    command = ["eval", str(photos), "--weights", str(candidate_path), "--against", str(shipped), "--crop", str(crop),
               "--device", "cpu", "--by-photo", "--json", str(scores_json)]
    status = (evaluate or edpn)(command)
    if status != 0:
        raise RuntimeError(f"edpn {' '.join(command)} failed with exit status {status}")
    groups = json.loads(scores_json.read_text())["groups"]
    reasons = shipping_verdict(groups, "EDPN", shipped.name)
    if not reasons:
        rounded, _ = load_model(candidate_path)
        summaries = {name: group for name, group in groups.items() if " / " not in name}
        save_weights(rounded, shipped, cfg.preset, half=True, **details,
                     metrics={"validation": "edpn " + " ".join(map(_shown, command[:-2])), "groups": summaries})
    return reasons


def fetch_missing_photos(campaign: Campaign, tasks: Sequence[Task] | None = None) -> None:
    """A fresh clone has no photos (data/ is not committed): fetch and split them where the recipe expects them."""
    from .photos import arrange_split, fetch_photos

    folders = {Path(getattr(campaign.config(task), key)) for task in tasks or campaign.tasks()
               for key in ("data", "val_data") if getattr(campaign.config(task), key)}
    for root in sorted({folder.parent for folder in folders if not folder.is_dir()}):
        logger.info("no training photos in %s: fetching them from Debian's packages", root)
        fetch_photos(root, log=logger.info)
        arrange_split(root)


LOG_COLUMNS = (("task", "task", "{}"), ("date", "date (UTC)", "{}"), ("iterations", "iterations", "{:,}"),
               ("chunk_iterations", "added", "{:,}"), ("wall_minutes", "minutes", "{:.0f}"), ("lr", "lr", "{:.2e}"),
               ("loss", "loss", "{:.4f}"), ("val_gain_db", "select gain dB", "{:+.3f}"), ("machine", "machine", "{}"))


def gain_curve(lines: Sequence[dict], task: Task) -> list[tuple[str, list[tuple[int, float]]]]:
    """The task's select gain against cumulative iterations, one curve per set of selection crops (digest), in the
    order the campaign met them: every validation a chunk logged, its reference points and chunk ends."""
    curves: dict[str, dict[int, float]] = {}
    for line in lines:
        if line["task"] != task:
            continue
        points = curves.setdefault(line["select"], {})
        for iteration, gain in line.get("val_curve", []):
            points[iteration] = gain
        if line.get("val_gain_db") is not None and line.get("val_iteration") is not None:
            points[line["val_iteration"]] = line["val_gain_db"]
    return [(digest, sorted(points.items())) for digest, points in curves.items() if points]


def format_curve(lines: Sequence[dict]) -> str:
    """The gain curves as a Markdown table (the model card quotes it)."""
    rows = ["| task | select crops | iterations: select gain (dB) |", "|---|---|---|"]
    for task in TASKS:
        for digest, points in gain_curve(lines, task):
            rows.append(f"| {task} | {digest} | " + "; ".join(f"{i:,}: {g:+.3f}" for i, g in points) + " |")
    return "\n".join(rows) if len(rows) > 2 else ""


def group_curve(lines: Sequence[dict], task: Task) -> tuple[str, list[tuple[int, dict[str, float]]]] | None:
    """The task's gains per family and input format (grid validation crops) at every validation, on the crops
    the campaign scored last; None when no line has them."""
    digests = [line["select"] for line in lines if line["task"] == task and line.get("val_group_curve")]
    if not digests:
        return None
    points: dict[int, dict[str, float]] = {}
    for line in lines:
        if line["task"] == task and line["select"] == digests[-1]:
            overall = {**dict(line.get("val_curve", [])), line.get("val_iteration"): line.get("val_gain_db")}
            points.update({iteration: {"all": overall.get(iteration), **groups}
                           for iteration, groups in line.get("val_group_curve", [])})
    return digests[-1], sorted(points.items())


def _in_table_order(groups: set[str]) -> list[str]:
    """Select groups as the tables show them: all, then the blur families, then the input formats."""
    return sorted(groups, key=lambda group: (group != "all", not group.startswith("family"), group))


def select_verdict(gains: Mapping[str, float | None], shipped: Mapping[str, float | None]) -> list[str]:
    """shipping_verdict on the selection crops: why these gains would not replace the shipped file's (empty: a
    candidate worth scoring on the report)."""
    groups = {group: {"scores": {"candidate": {"psnr_y": gains[group]}, "shipped": {"psnr_y": shipped[group]}}}
              for group in gains if group in shipped and gains[group] is not None and shipped[group] is not None}
    if not {"all", "family none"} <= groups.keys():
        return ["no overall or unblurred gain to compare"]
    return shipping_verdict(groups, "candidate", "shipped")


def format_group_curve(lines: Sequence[dict], shipped: Mapping[Task, dict | None] | None = None) -> str:
    """Per task, a Markdown table of the gain per group at every validation: what the shipping rule judges,
    seen while the campaign trains. With the shipped file's gains on the same crops (shipped_select_gains), a
    first row of them and a column saying whether each validation would pass the shipping rule against it."""
    tables = []
    for task in TASKS:
        found = group_curve(lines, task)
        if found is None:
            continue
        digest, points = found
        bar = (shipped or {}).get(task)
        bar = bar if bar and bar["select"] == digest else None
        groups = _in_table_order({group for _, gains in points for group in gains})
        head = ["iteration", *groups, *(["vs the shipped file (shipping rule on select)"] if bar else [])]
        rows = [f"{task}, select crops {digest}: gain over the baseline (dB) per group",
                "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def cells(gains: Mapping[str, float | None]) -> list[str]:
            return ["-" if gains.get(group) is None else f"{gains[group]:+.3f}" for group in groups]

        if bar:
            rows.append(f"| shipped file ({bar['file']}) | " + " | ".join([*cells(bar["gains"]), "-"]) + " |")
        for iteration, gains in points:
            verdict = ["; ".join(select_verdict(gains, bar["gains"])) or "passes"] if bar else []
            rows.append(f"| {iteration:,} | " + " | ".join([*cells(gains), *verdict]) + " |")
        tables.append("\n".join(rows))
    return "\n\n".join(tables)


def format_log(lines: Sequence[dict]) -> str:
    """The log as a Markdown table (the model card quotes it)."""
    if not lines:
        return ""
    rows = [[fmt.format(line[key]) if line.get(key) is not None else "-" for key, _, fmt in LOG_COLUMNS]
            for line in lines]
    header = [title for _, title, _ in LOG_COLUMNS]
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, ["---"] * len(header), *rows])
