"""Training with the paper's network and loss, BasicSR's habits (EMA weights, validation that keeps the best
checkpoint), resumable bit for bit, guarded against non-finite steps, bf16 where the device has it,
DistributedDataParallel under torchrun (one process per GPU, or several single-thread processes on a CPU).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import random
import signal
import time
from datetime import date
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from ..archs import EDPN, PTB
from ..durable import replace_durably
from ..inference.precision import resolve_precision, use_channels_last
from ..model_io import WeightsInfo, build_model, load_model, save_weights
from .checkpoint import newest_checkpoint, previous_checkpoint, read_checkpoint, rng_state, set_rng_state
from .config import TrainConfig, resumed_config
from .data import PairedFolderDataset, RedsDataset, SyntheticPairDataset
from .losses import EDPNLoss
from .validation import baseline_scores, build_val_items, gains_over, group_gains, validate

logger = logging.getLogger("edpn.train")


class StopRequest:
    """The first SIGINT or SIGTERM ends training at the next iteration with a validation and a checkpoint, so
    nothing trained is lost; a second Ctrl+C interrupts at once (KeyboardInterrupt), for whoever cannot wait. A
    SIGTERM while stopping does not: a supervisor forwards one on the user's Ctrl+C (`edpn campaign run` to its
    chunks), which already had the SIGINT themselves."""

    def __init__(self) -> None:
        self.signalled: int | None = None  # the signal that asked

    def requested(self) -> bool:
        return self.signalled is not None

    def _handle(self, signum, frame) -> None:
        if self.signalled is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signalled = signum
        os.write(2, b"stopping after this iteration, with a checkpoint (Ctrl+C again: quit at once, without it)\n")

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class IterationSampler(Sampler[int]):
    """Endless, seeded reshuffles shared by every rank: rank r of w takes positions r, r + w, ... of each
    permutation, so the ranks see disjoint samples that cover the set once per epoch; starting at any sample
    offset (per rank) makes resumed runs see the same batches."""

    def __init__(self, size: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        self.size, self.seed, self.start, self.rank, self.world = size, seed, start, rank, world

    def __iter__(self) -> Iterator[int]:
        position = self.start * self.world + self.rank
        while True:
            epoch, offset = divmod(position, self.size)
            yield int(np.random.default_rng((self.seed, epoch)).permutation(self.size)[offset])
            position += self.world


TrainingPairs = SyntheticPairDataset | PairedFolderDataset | RedsDataset


def build_train_dataset(cfg: TrainConfig, world: int = 1) -> TrainingPairs:
    """Synthetic pairs are indexed by crop: one distinct crop per sample the whole run draws over all ranks."""
    if cfg.data_kind == "photos":
        return SyntheticPairDataset(cfg.data, cfg.task, lq_patch=cfg.lq_patch, degradation=cfg.degradation_config(),
                                    seed=cfg.seed, length=max(cfg.iterations * cfg.batch_size * world, 1))
    if cfg.data_kind == "paired":
        return PairedFolderDataset(cfg.lq_dir, cfg.data, cfg.task, lq_patch=cfg.lq_patch, seed=cfg.seed)
    return RedsDataset(cfg.data, cfg.task, split="train", lq_patch=cfg.lq_patch)  # "reds", as TrainConfig checks


def starting_weights(path: str | Path, model: EDPN) -> tuple[EDPN, WeightsInfo]:
    """The network in `path`, refused unless it is the exact network being trained (same preset, task, sizes)."""
    loaded, info = load_model(path)
    want = dataclasses.replace(model.cfg, replica_shortcut=True)
    have = dataclasses.replace(loaded.cfg, replica_shortcut=True)
    if have != want:
        differ = [f"{f.name} {getattr(have, f.name)!r} (want {getattr(want, f.name)!r})"
                  for f in dataclasses.fields(want) if getattr(have, f.name) != getattr(want, f.name)]
        raise ValueError(f"{path}: cannot start training from these weights: {', '.join(differ)}")
    return loaded, info


class TrainingDiverged(RuntimeError):
    """Non-finite losses or gradients several steps in a row; the message says which checkpoint is good."""


class ModelEMA:
    """BasicSR's model_ema: ema = decay * ema + (1 - decay) * weights after every optimizer step. The EMA is
    what validation scores and export writes: it is smoother than the last step's weights."""

    def __init__(self, model: EDPN, decay: float):
        self.decay = decay
        self.module: EDPN = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        ema: list[torch.Tensor] = list(self.module.parameters())
        raw: list[torch.Tensor] = list(model.parameters())
        torch._foreach_lerp_(ema, raw, 1.0 - self.decay)
        for ema_buffer, buffer in zip(self.module.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)


class OffsetWatch:
    """Mean |offset| of every PTB's deformable convolution at its latest forward pass. BasicSR warns when it
    passes 50 px: the DCN is then sampling far from where it aligns, a sign of instability."""

    def __init__(self, model: torch.nn.Module):
        self.latest: dict[str, torch.Tensor] = {}
        for name, module in model.named_modules():
            if isinstance(module, PTB):
                module.offset_mask.register_forward_hook(self._recorder(name))

    def _recorder(self, name: str):
        def record(module, inputs, output: torch.Tensor) -> None:
            offsets = output[:, : output.shape[1] * 2 // 3]  # (dy, dx) per group and tap; the rest is modulation
            self.latest[name] = offsets.detach().float().abs().mean()
        return record

    def largest(self) -> torch.Tensor:
        return torch.stack(list(self.latest.values())).max() if self.latest else torch.zeros(())


class Trainer:
    def __init__(self, cfg: TrainConfig, device: torch.device | None = None):
        self.cfg = cfg
        self.out_dir = Path(cfg.out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"{self.out_dir}: the run folder (--out-dir) is a file")
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if self.distributed and torch.cuda.is_available():
            torch.cuda.set_device(local)  # else every rank opens a context on GPU 0 under NCCL
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if device is None:
            device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
        self.device = device
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.model = build_model(cfg.preset, cfg.task, **cfg.model_overrides)
        self.start_info: WeightsInfo | None = None
        if cfg.init_weights:
            start, self.start_info = starting_weights(cfg.init_weights, self.model)
            self.model.load_state_dict(start.state_dict())
        self.model.to(device)
        self.bf16 = cfg.bf16 and (device.type == "cuda" or resolve_precision(device) == "bf16")
        # oneDNN's bf16 kernels want channels-last; in fp32 (a CPU without bf16 hardware) the plain layout trains
        # faster: lite deblock's 128 px step 20% on the AVX2 machine, sr the same (docs/BENCHMARKS.md).
        self.channels_last = device.type == "cpu" and self.bf16
        if self.channels_last:
            use_channels_last(self.model)
        self.ema = ModelEMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.offsets = OffsetWatch(self.model)  # after the EMA's copy, which must not report into it
        self.net = (torch.nn.parallel.DistributedDataParallel(self.model, device_ids=[device] if device.type == "cuda"
                    else None) if self.distributed else self.model)
        self.loss_fn = EDPNLoss(ssim_weight=cfg.ssim_weight, eps=cfg.charbonnier_eps)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate(0), betas=cfg.betas)
        self.iteration = 0
        self.schedule_start = 0
        self.bad_steps = 0
        self.best: dict[str, float] = {}
        self.latest_scores: dict[str, float] = {}
        self.gain_curve: list[tuple[int, float]] = []  # (iteration, Y-PSNR gain) of every validation of the run
        self.group_curve: list[tuple[int, dict[str, float]]] = []  # the same per group, for grid validation crops
        self.recent_losses: list[float] = []  # since the last checkpoint; the campaign log reports their mean
        self.resumed = False
        self.seconds_before = 0.0  # wall time the runs this one resumed spent in fit()
        self._fit_started: float | None = None
        self._offset_warned_at: int | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, changes: dict | None = None, new_schedule: bool = False,
                        device: torch.device | None = None) -> "Trainer":
        """Continue a run: the checkpoint's settings with `changes` (see resumed_config), its weights, EMA,
        optimizer, iteration and random state. With new_schedule the learning-rate schedule restarts here."""
        path, state, passed_over = newest_checkpoint(path)
        try:
            cfg, notes = resumed_config(TrainConfig.from_checkpoint_json(state["config"]), changes or {},
                                        new_schedule)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        trainer = cls(cfg, device)
        trainer.restore(state, path, new_schedule)
        if trainer.rank == 0:
            for problem in passed_over:
                logger.warning("passed over %s", problem)
            logger.info("resumed %s at iteration %d", path, trainer.iteration)
            for note in notes:
                logger.info("  %s", note)
        return trainer

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pth"

    def validated_path(self, iteration: int) -> Path:
        """Where keep_validated puts the EMA validated at `iteration` (fp16, as shipped)."""
        return self.out_dir / "validated" / f"{iteration}.safetensors"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pth"

    @property
    def result_model(self) -> EDPN:
        """The weights this run stands for: the EMA when kept, else the trained weights."""
        return self.ema.module if self.ema is not None else self.model

    def state(self) -> dict:
        """`model` holds the result weights, so load_model, ship_weights and --init-weights read the EMA;
        `model_raw` holds the weights the optimizer steps when they differ."""
        state = {"model": self.result_model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "iteration": self.iteration, "schedule_start": self.schedule_start, "best": self.best,
                 "rng": rng_state(), "config": json.dumps(dataclasses.asdict(self.cfg)),
                 "latest_scores": self.latest_scores, "gain_curve": self.gain_curve, "group_curve": self.group_curve,
                 "recent_loss": self.recent_loss, "training_seconds": self.training_seconds}
        if self.ema is not None:
            state["model_raw"] = self.model.state_dict()
        return state

    @property
    def training_seconds(self) -> float:
        """Wall time in fit() of this run and of every run it resumed, validations included: what an arm trained
        beside the campaign cost, whenever it started (`edpn campaign adopt`)."""
        running = time.monotonic() - self._fit_started if self._fit_started is not None else 0.0
        return self.seconds_before + running

    @property
    def recent_loss(self) -> float:
        return float(np.mean(self.recent_losses)) if self.recent_losses else math.nan

    def save_checkpoint(self, path: Path | None = None) -> None:
        """The latest checkpoint keeps the one before it as checkpoint.prev.pth, to roll a bad one back. Written
        whole and flushed before any rename, so a crash at any instant leaves the old checkpoint or the new one
        (resume takes the newest readable of the two)."""
        if self.rank != 0:
            return
        path = path or self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        replace_durably(tmp, path, previous_checkpoint(path) if path == self.checkpoint_path else None)

    def restore(self, state: dict, path: str | Path, new_schedule: bool = False) -> None:
        """Load a checkpoint's contents (from read_checkpoint); without an EMA in it the EMA starts from its
        weights."""
        raw = state.get("model_raw", state["model"])
        try:
            self.model.load_state_dict(raw)
            if self.ema is not None:
                self.ema.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"{path}: does not fit this network ({reason})") from exc
        for group in self.optimizer.param_groups:
            group["betas"] = self.cfg.betas
        self.iteration = state["iteration"]
        self.schedule_start = self.iteration if new_schedule else state.get("schedule_start", 0)
        self.best = state.get("best", {})
        self.latest_scores = state.get("latest_scores", {})
        self.gain_curve = [tuple(point) for point in state.get("gain_curve", [])]
        self.group_curve = [tuple(point) for point in state.get("group_curve", [])]
        self.seconds_before = state.get("training_seconds", 0.0)
        set_rng_state(state["rng"])
        self.resumed = True

    def continue_from(self, raw: dict[str, torch.Tensor], ema: dict[str, torch.Tensor], iteration: int,
                      schedule_start: int, best: dict[str, float]) -> None:
        """Carry on from weights saved without an optimizer (a campaign's committed state): Adam starts afresh,
        the schedule and the data stream continue at `iteration`."""
        self.model.load_state_dict(raw)
        if self.ema is not None:
            self.ema.module.load_state_dict(ema)
        self.iteration, self.schedule_start, self.best = iteration, schedule_start, best
        self.resumed = True

    def batches(self, dataset: TrainingPairs) -> Iterator[dict]:
        sampler = IterationSampler(len(dataset), self.cfg.seed, self.iteration * self.cfg.batch_size,
                                   self.rank, self.world)
        loader = DataLoader(dataset, batch_size=self.cfg.batch_size, sampler=sampler,
                            num_workers=self.cfg.workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=self.cfg.workers > 0)
        return iter(loader)

    def step(self, batch: dict) -> dict[str, float]:
        """One update. A non-finite loss or gradient norm (averaged over ranks, so every rank decides alike)
        skips the update but still counts the iteration, which keeps the data stream and schedule aligned."""
        lr = self.cfg.learning_rate(self.iteration, self.schedule_start)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        lq = batch["lq"].to(self.device, non_blocking=True)
        gt = batch["gt"].to(self.device, non_blocking=True)
        if self.channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.net(lq)
        loss, parts = self.loss_fn(out.float(), gt)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf)
        names = ["loss", *parts, "grad_norm", "dcn_offset"]
        values = torch.stack([loss.detach(), *parts.values(), grad_norm, self.offsets.largest().to(loss.device)])
        if self.distributed:
            dist.all_reduce(values)
            values /= self.world
        logs = dict(zip(names, values.tolist()))
        finite = all(math.isfinite(logs[k]) for k in ("loss", "grad_norm"))
        if finite:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.bad_steps = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.bad_steps += 1
        self.iteration += 1
        logs["lr"] = lr
        return logs

    def fit(self, until: int | None = None, show_progress: bool = True, time_limit_s: float | None = None,
            stop: Callable[[], bool] | None = None) -> dict[str, float]:
        """Train up to iteration `until` (default: the config's total), until `time_limit_s` seconds have
        passed or until `stop()` says so (then a checkpoint is written and the run can resume); returns the last
        validation scores."""
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        cfg = self.cfg
        until = cfg.iterations if until is None else min(until, cfg.iterations)
        started = self._fit_started = time.monotonic()
        val_items = build_val_items(cfg) if self.rank == 0 else []
        scale = self.model.cfg.scale
        baseline = baseline_scores(val_items, cfg.task, scale) if val_items else {}
        if self.rank == 0:
            logger.info("batch %d per rank x %d rank(s) = effective batch %d; lr %.3g (%s schedule, warmup %d) "
                        "for that effective batch", cfg.batch_size, self.world, cfg.batch_size * self.world, cfg.lr,
                        cfg.lr_schedule, cfg.warmup_iterations)
            if baseline:
                logger.info("validation: %d %s crops of %s; baseline Y-PSNR %.3f dB", len(val_items), cfg.val_crops,
                            cfg.val_data, baseline["psnr_y"])
        writer = self._writer()
        batches = self.batches(build_train_dataset(cfg, self.world))
        bar = tqdm(total=until, initial=self.iteration, disable=not show_progress or self.rank != 0,
                   unit="it", dynamic_ncols=True)
        scores: dict[str, float] = {}
        console = logging.getLogger("edpn")  # where `edpn train` prints; the bar must not tear its lines
        redirect = logging_redirect_tqdm(loggers=[console]) if bar.disable is False and console.handlers else (
            contextlib.nullcontext())
        try:
            with redirect:
                while self.iteration < until:
                    batch = next(batches)
                    logs = self.step(batch)
                    if math.isfinite(logs["loss"]):
                        self.recent_losses.append(logs["loss"])
                    bar.update(1)
                    bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}")
                    self._watch(logs, batch)
                    if writer is not None:
                        for key, value in logs.items():
                            writer.add_scalar(f"train/{key}", value, self.iteration)
                    out_of_time = (time_limit_s is not None or stop is not None) and self._everyone(
                        (time_limit_s is not None and time.monotonic() - started >= time_limit_s)
                        or (stop is not None and stop()))
                    if val_items and (self.iteration % cfg.val_every == 0 or self.iteration == until or out_of_time):
                        scores = self._validate(val_items, baseline, writer)
                    if self.iteration % cfg.checkpoint_every == 0 or self.iteration == until or out_of_time:
                        self._checkpoint()
                        self.recent_losses.clear()
                    if out_of_time:
                        if self.rank == 0:
                            logger.info("stopped at iteration %d after %.0f s", self.iteration,
                                        time.monotonic() - started)
                        break
        finally:
            self.seconds_before, self._fit_started = self.training_seconds, None
            bar.close()
            if writer is not None:
                writer.close()
        return scores

    def _everyone(self, flag: bool) -> bool:
        """True on every rank once it is true on any (ranks that stopped apart would wait on each other)."""
        if not self.distributed:
            return flag
        value = torch.tensor(float(flag), device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def _watch(self, logs: dict[str, float], batch: dict) -> None:
        if self.bad_steps:
            if self.rank == 0:
                logger.warning("iteration %d: loss %.4g, gradient norm %.4g: not finite, update skipped",
                               self.iteration, logs["loss"], logs["grad_norm"])
            if self.bad_steps >= self.cfg.max_bad_steps:
                raise TrainingDiverged(self._diverged_message(batch))
        offset = logs["dcn_offset"]
        if offset > self.cfg.dcn_offset_warning and self.rank == 0 and (
                self._offset_warned_at is None or self.iteration - self._offset_warned_at >= self.cfg.checkpoint_every):
            self._offset_warned_at = self.iteration
            logger.warning("iteration %d: mean |DCN offset| %.1f px is over %.0f px: alignment is going astray "
                           "(lower --lr or --grad-clip)", self.iteration, offset, self.cfg.dcn_offset_warning)

    def validate_now(self, items: list[dict]) -> dict[str, float]:
        """The result weights' scores on validation crops (build_val_items), nothing saved (a campaign's
        reference point)."""
        return self._scores(items, baseline_scores(items, self.cfg.task, self.model.cfg.scale))

    def _scores(self, items: list[dict], baseline: dict[str, float]) -> dict[str, float]:
        scores = validate(self.result_model, items, self.device, self.model.cfg.scale)
        return {**scores, **gains_over(scores, baseline)}

    def _validate(self, items: list[dict], baseline: dict[str, float], writer) -> dict[str, float]:
        scores = self._scores(items, baseline)
        self.latest_scores = {"iteration": self.iteration, **scores}
        self.gain_curve.append((self.iteration, scores["gain_y"]))
        groups = group_gains(scores)
        if groups:
            self.group_curve.append((self.iteration, groups))
        improved = scores["psnr_y"] > self.best.get("psnr_y", -math.inf)
        if improved:
            self.best = {"iteration": self.iteration, **scores}
            self.save_checkpoint(self.best_path)
        if self.cfg.keep_validated and self.rank == 0:
            self.export(self.validated_path(self.iteration))
        logger.info("iteration %d: Y-PSNR %.3f dB (%+.3f dB over the baseline), Y-SSIM %.4f%s", self.iteration,
                    scores["psnr_y"], scores["gain_y"], scores["ssim_y"],
                    " - best so far, kept in best.pth" if improved else f" (best {self.best['gain_y']:+.3f} dB at "
                    f"iteration {self.best['iteration']})")
        if groups:
            logger.info("iteration %d, gain per group: %s", self.iteration,
                        ", ".join(f"{group} {gain:+.3f}" for group, gain in groups.items()))
        if writer is not None:
            for key, value in scores.items():
                writer.add_scalar(f"val/{key}", value, self.iteration)
        return scores

    def _checkpoint(self) -> None:
        if self.bad_steps:
            if self.rank == 0:
                logger.warning("iteration %d: no checkpoint after a non-finite step", self.iteration)
            return
        self.save_checkpoint()

    def _sound(self, path: Path, batch: dict) -> bool:
        """Whether the weights saved in `path` are finite and give a finite loss on `batch`."""
        try:
            state = read_checkpoint(path)
        except ValueError:
            return False
        probe = build_model(self.cfg.preset, self.cfg.task, **self.cfg.model_overrides).to(self.device)
        probe.load_state_dict(state.get("model_raw", state["model"]))
        if not all(torch.isfinite(p).all() for p in probe.parameters()):
            return False
        with torch.no_grad():
            loss, _ = self.loss_fn(probe(batch["lq"].to(self.device)).float(), batch["gt"].to(self.device))
        return bool(torch.isfinite(loss))

    def _diverged_message(self, batch: dict) -> str:
        """Roll a checkpoint that fails on the diverging batch back to the previous one, and say what is left."""
        first = self.iteration - self.bad_steps + 1
        head = (f"stopped: loss or gradient not finite for {self.bad_steps} steps in a row (iterations {first}-"
                f"{self.iteration}, lr {self.cfg.learning_rate(self.iteration - 1, self.schedule_start):.3g})")
        if self.rank != 0:
            return head
        latest, previous = self.checkpoint_path, previous_checkpoint(self.checkpoint_path)
        if latest.exists() and not self._sound(latest, batch):
            if previous.exists() and self._sound(previous, batch):
                previous.replace(latest)
            else:
                latest.replace(latest.with_name("checkpoint.bad.pth"))
        if not latest.exists():
            return f"{head}; no good checkpoint to resume: start again with a lower --lr"
        kept = read_checkpoint(latest)["iteration"]
        return (f"{head}; the last good checkpoint, {latest} at iteration {kept}, is kept: continue with "
                f"--resume --new-schedule and a lower --lr")

    def _writer(self):
        if not self.cfg.tensorboard or self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning("tensorboard is not installed; training logs go to the console only")
            return None
        # A resumed run replaces whatever an older checkpoint's run logged after this point.
        return SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.iteration + 1 if self.resumed else None)

    def export(self, path: str | Path, half: bool = True, weights: str = "ema", **extra) -> Path:
        """Weights for the app: safetensors with preset, task, scale, iterations, data, date and any extra
        metadata (pass `metrics=` measured on these exact weights, e.g. by `edpn eval`). weights="ema" writes
        the EMA (what validation scored), "raw" the optimizer's last weights."""
        if weights not in ("ema", "raw"):
            raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
        if weights == "ema" and self.ema is None:
            raise ValueError("this run keeps no EMA (ema_decay 0): export its raw weights")
        extra.setdefault("training_data", self.cfg.data)
        extra.setdefault("weights", f"ema {self.cfg.ema_decay}" if weights == "ema" else "raw")
        if self.start_info is not None:
            extra.setdefault("initialised_from", Path(self.cfg.init_weights).name)
            extra.setdefault("iterations_before", self.start_info.metadata.get("iterations", "unknown"))
        model = self.result_model if weights == "ema" else self.model
        return save_weights(model, path, self.cfg.preset, half=half, iterations=self.iteration,
                            date=date.today().isoformat(), **extra)
