"""Training with the paper's recipe; resumable bit for bit, bf16 where the device has it, DistributedDataParallel under torchrun."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from .data import PairedFolderDataset, RedsDataset, SyntheticPairDataset
from .degradations import DegradationConfig
from .losses import EDPNLoss
from .metrics import psnr, ssim
from .model_io import WeightsInfo, build_model, load_model, save_weights
from .precision import resolve_precision, use_channels_last


@dataclass
class TrainConfig:
    """Every number of a run; defaults are the paper's (Adam 1e-4, x0.8 every 100k iterations, batch 4)."""

    preset: str = "lite"
    task: str = "sr"
    model_overrides: dict = field(default_factory=dict)
    data: str = ""  # folder of sharp photos (synthetic pairs), or a REDS root with data_kind="reds"
    data_kind: str = "photos"  # photos | paired | reds
    lq_dir: str = ""  # for data_kind="paired"
    val_data: str = ""  # folder of sharp photos never seen in training
    val_patch: int = 96  # LR size of the fixed validation crops
    val_items: int = 16
    lq_patch: int | None = None  # None: 64 for sr, 160 for deblock
    batch_size: int = 4
    iterations: int = 1_000_000
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_decay: float = 0.8
    lr_decay_every: int = 100_000
    charbonnier_eps: float = 1e-3
    ssim_weight: float = 0.1
    degradation: dict = field(default_factory=dict)  # changes to DegradationConfig.for_task(task), e.g. jpeg_prob
    init_weights: str = ""  # start the network from these weights (fine-tuning); optimizer and count start afresh
    seed: int = 0
    workers: int = 0
    bf16: bool = True  # autocast on CUDA and on CPUs with AMX/AVX512-BF16 (edpn_core/precision.py)
    val_every: int = 5_000
    checkpoint_every: int = 1_000
    out_dir: str = "runs/edpn"
    tensorboard: bool = True

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        with open(path, "rb") as f:
            data = tomllib.load(f)
        return cls().updated(**data)

    def updated(self, **changes) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        if "betas" in changes:
            changes["betas"] = tuple(changes["betas"])
        return dataclasses.replace(self, **changes)

    def degradation_config(self) -> DegradationConfig:
        """The task's documented mix with this run's changes (TOML and JSON give lists where ranges are tuples)."""
        base = DegradationConfig.for_task(self.task)
        known = {f.name for f in dataclasses.fields(base)}
        unknown = set(self.degradation) - known
        if unknown:
            raise ValueError(f"unknown degradation settings: {sorted(unknown)}; known: {sorted(known)}")
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in self.degradation.items()}
        return dataclasses.replace(base, **changes)


class IterationSampler(Sampler[int]):
    """Endless, seeded reshuffles; starting at any sample offset makes resumed runs see the same batches."""

    def __init__(self, size: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        self.size, self.seed, self.start, self.rank, self.world = size, seed, start, rank, world

    def __iter__(self) -> Iterator[int]:
        position = self.start * self.world + self.rank
        while True:
            epoch, offset = divmod(position, self.size)
            yield int(np.random.default_rng((self.seed, epoch)).permutation(self.size)[offset])
            position += self.world


def build_train_dataset(cfg: TrainConfig) -> Dataset:
    if cfg.data_kind == "photos":
        return SyntheticPairDataset(cfg.data, cfg.task, lq_patch=cfg.lq_patch, degradation=cfg.degradation_config(),
                                    seed=cfg.seed, length=max(cfg.iterations * cfg.batch_size, 1))
    if cfg.data_kind == "paired":
        return PairedFolderDataset(cfg.lq_dir, cfg.data, cfg.task, lq_patch=cfg.lq_patch, seed=cfg.seed)
    if cfg.data_kind == "reds":
        return RedsDataset(cfg.data, cfg.task, split="train", lq_patch=cfg.lq_patch)
    raise ValueError(f"data_kind must be photos, paired or reds, got {cfg.data_kind!r}")


def build_val_items(cfg: TrainConfig) -> list[dict]:
    """A fixed validation set: the same crops and degradations at every validation."""
    if not cfg.val_data:
        return []
    ds = SyntheticPairDataset(cfg.val_data, cfg.task, lq_patch=cfg.val_patch, degradation=cfg.degradation_config(),
                              seed=cfg.seed + 10_007, length=cfg.val_items, augment=False)
    return [ds[i] for i in range(len(ds))]


def to_image(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def validate(model: torch.nn.Module, items: list[dict], device: torch.device, scale: int) -> dict[str, float]:
    model.eval()
    scores = {"psnr_y": [], "ssim_y": []}
    for item in items:
        out = to_image(model(item["lq"][None].to(device))[0])
        gt = to_image(item["gt"])
        scores["psnr_y"].append(psnr(out, gt, crop_border=scale, test_y=True))
        scores["ssim_y"].append(ssim(out, gt, crop_border=scale, test_y=True))
    model.train()
    return {k: float(np.mean(v)) for k, v in scores.items()}


def rng_state() -> dict:
    """Every generator a run may draw from, in plain types so checkpoints load with weights_only=True."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in numpy_state["state"].items()}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = dict(numpy_state["state"], key=np.asarray(numpy_state["state"]["key"], np.uint32))
    np.random.set_state(numpy_state)
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def starting_weights(path: str | Path, model: torch.nn.Module) -> tuple[torch.nn.Module, WeightsInfo]:
    """The network in `path`, refused unless it is the exact network being trained (same preset, task, sizes)."""
    loaded, info = load_model(path)
    want = dataclasses.replace(model.cfg, replica_shortcut=True)
    have = dataclasses.replace(loaded.cfg, replica_shortcut=True)
    if have != want:
        differ = [f"{f.name} {getattr(have, f.name)!r} (want {getattr(want, f.name)!r})"
                  for f in dataclasses.fields(want) if getattr(have, f.name) != getattr(want, f.name)]
        raise ValueError(f"{path}: cannot start training from these weights: {', '.join(differ)}")
    return loaded, info


class Trainer:
    def __init__(self, cfg: TrainConfig, device: torch.device | None = None):
        self.cfg = cfg
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if device is None:
            local = int(os.environ.get("LOCAL_RANK", "0"))
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
        if device.type == "cpu":
            use_channels_last(self.model)
        self.net = (torch.nn.parallel.DistributedDataParallel(self.model, device_ids=[device] if device.type == "cuda"
                    else None) if self.distributed else self.model)
        self.loss_fn = EDPNLoss(ssim_weight=cfg.ssim_weight, eps=cfg.charbonnier_eps)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, cfg.lr_decay_every, cfg.lr_decay)
        self.iteration = 0
        self.out_dir = Path(cfg.out_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pth"

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "iteration": self.iteration, "rng": rng_state(),
                 "config": json.dumps(dataclasses.asdict(self.cfg))}
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)

    def load_checkpoint(self, path: str | Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration = state["iteration"]
        set_rng_state(state["rng"])

    def batches(self, dataset: Dataset) -> Iterator[dict]:
        sampler = IterationSampler(len(dataset), self.cfg.seed, self.iteration * self.cfg.batch_size,
                                   self.rank, self.world)
        loader = DataLoader(dataset, batch_size=self.cfg.batch_size, sampler=sampler,
                            num_workers=self.cfg.workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=self.cfg.workers > 0)
        return iter(loader)

    def step(self, batch: dict) -> dict[str, float]:
        lq = batch["lq"].to(self.device, non_blocking=True)
        gt = batch["gt"].to(self.device, non_blocking=True)
        use_bf16 = self.cfg.bf16 and self.device.type in ("cuda", "cpu") and (
            self.device.type == "cuda" or resolve_precision(self.device) == "bf16")
        if self.device.type == "cpu":
            lq = lq.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = self.net(lq)
        loss, parts = self.loss_fn(out.float(), gt)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        return {"loss": loss.item(), **{k: float(v) for k, v in parts.items()}}

    def fit(self, until: int | None = None, show_progress: bool = True) -> dict[str, float]:
        """Train up to iteration `until` (default: the config's total); returns the last validation scores."""
        from tqdm import tqdm

        cfg = self.cfg
        until = cfg.iterations if until is None else min(until, cfg.iterations)
        val_items = build_val_items(cfg) if self.rank == 0 else []
        writer = self._writer()
        batches = self.batches(build_train_dataset(cfg))
        bar = tqdm(total=until, initial=self.iteration, disable=not show_progress or self.rank != 0,
                   unit="it", dynamic_ncols=True)
        scores: dict[str, float] = {}
        started, start_iter = time.monotonic(), self.iteration
        while self.iteration < until:
            logs = self.step(next(batches))
            lr = self.scheduler.get_last_lr()[0]
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{lr:.2e}")
            if writer is not None:
                for key, value in logs.items():
                    writer.add_scalar(f"train/{key}", value, self.iteration)
                writer.add_scalar("train/lr", lr, self.iteration)
            if val_items and (self.iteration % cfg.val_every == 0 or self.iteration == until):
                scores = validate(self.model, val_items, self.device, self.model.cfg.scale)
                bar.write(f"iter {self.iteration}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
                if writer is not None:
                    for key, value in scores.items():
                        writer.add_scalar(f"val/{key}", value, self.iteration)
            if self.iteration % cfg.checkpoint_every == 0 or self.iteration == until:
                self.save_checkpoint()
        bar.close()
        if writer is not None:
            writer.close()
        elapsed = time.monotonic() - started
        self.throughput = (self.iteration - start_iter) / elapsed if elapsed > 0 else 0.0
        return scores

    def _writer(self):
        if not self.cfg.tensorboard or self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("tensorboard is not installed; training logs go to the console only")
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))

    def export(self, path: str | Path, half: bool = True, **extra) -> Path:
        """Weights for the app: safetensors with preset, task, scale, iterations, data, date and any extra
        metadata (pass `metrics=` measured on these exact weights, e.g. by `edpn eval`)."""
        extra.setdefault("training_data", self.cfg.data)
        if self.start_info is not None:
            extra.setdefault("initialised_from", Path(self.cfg.init_weights).name)
            extra.setdefault("iterations_before", self.start_info.metadata.get("iterations", "unknown"))
        return save_weights(self.model, path, self.cfg.preset, half=half, iterations=self.iteration,
                            date=date.today().isoformat(), **extra)
