"""`edpn bench`: measured throughput and efficiency, the CPU fast path against the path before it, tile sizes,
replica-shortcut speed-up, tiling overhead, peak memory and FLOPs."""
from __future__ import annotations

import json
import platform
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .archs import EDPN
from .archs.dcn import DcnImpl, dcn_implementation, modulated_deform_conv3x3
from .config import TASK_SCALES, TASKS, Preset, Task
from .inference.device import available_devices, describe_device
from .inference.engine import DEFAULT_OVERLAP, Restorer, RunSettings, TilePolicy, largest_activation_channels
from .inference.precision import Precision, cpu_has_fast_bf16
from .model_io import build_model, parameter_count

# Dense fp16/bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, for the achieved fraction.
KNOWN_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "4090": 165e12}


def reset_peak_rss() -> None:
    """Linux lets a process reset its own high-water mark; elsewhere the figure is the process maximum."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object], repeats: int, warm_up: Callable[[], object] | None = None) -> float:
    """Best of `repeats` after a warm-up (by default one run of `fn`): the cost a user sees on the second photo."""
    (warm_up or fn)()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def deform_conv_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    batch = input_shape[0]
    cout, cin_per_group, kh, kw = weight_shape
    return 2 * batch * cout * cin_per_group * kh * kw * out_shape[2] * out_shape[3]


def flops_per_input_pixel(preset: Preset, task: Task, size: int = 64) -> float:
    """Counted by running the model under FlopCounterMode, the deformable convs by their own formula through
    torchvision's op (the grid_sample form does the same arithmetic, but its sampling is not counted)."""
    import torchvision.ops  # noqa: F401 - registers torch.ops.torchvision, which the DCN imports only when used

    model = build_model(preset, task).eval()
    mapping = {torch.ops.torchvision.deform_conv2d.default: deform_conv_flops}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter, torch.no_grad(), dcn_implementation("torchvision"):
        model(torch.rand(1, 3, size, size))
    return counter.get_total_flops() / size**2


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random image: the speed does not depend on content, but NaN-free realistic ranges help."""
    rng = np.random.default_rng(seed)
    small = rng.random((max(h // 16, 2), max(w // 16, 2), 3), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


@dataclass(frozen=True)
class RestorePath:
    """How a restore runs: the DCN implementation, the number format and the automatic tile policy."""

    name: str
    dcn: DcnImpl = "auto"
    precision: Precision = "auto"
    tile_policy: TilePolicy = "speed"

    def restorer(self, model: EDPN, device: str) -> Restorer:
        return Restorer(models=[model], device=device, precision=self.precision)

    def run_settings(self, restorer: Restorer) -> RunSettings:
        """The tile this path's policy sizes for `restorer`."""
        return RunSettings(tile=restorer.auto_tile(self.tile_policy))


CURRENT_PATH = RestorePath("current")
# The CPU path before the fast path landed: torchvision's DCN, fp32, tiles capped at 512 px by memory alone.
BEFORE_FAST_PATH = RestorePath("before", dcn="torchvision", precision="fp32", tile_policy="memory")


def matmul_rate(device: str, dtype: torch.dtype = torch.float32, n: int = 2048) -> float:
    """FLOP/s of a large square matmul on this device, now: the yardstick the efficiency column divides by."""
    a = torch.rand(n, n, device=device, dtype=dtype)
    b = torch.rand(n, n, device=device, dtype=dtype)
    seconds = timed(lambda: torch.mm(a, b), repeats=5)
    return 2 * n**3 / seconds


def run_bench(quick: bool = False, presets=("lite", "paper"), tasks=TASKS, devices=None,
              photo_megapixels: float = 0.0, paths: tuple[RestorePath, ...] = (CURRENT_PATH,),
              tile_sweep: bool = False, log: Callable[[str], None] = print) -> dict:
    devices = devices or [name for name, _ in available_devices() if name in ("cuda:0", "cpu")]
    repeats = 1 if quick else 3
    result: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                                "torch": torch.__version__, "threads": torch.get_num_threads(),
                                "cpu_fast_bf16": cpu_has_fast_bf16()},
                    "paths": [asdict(p) for p in paths], "matmul": [], "dcn": [], "throughput": [], "tile_sweep": [],
                    "shortcut": [], "tiling": [], "flops": [], "photo": []}
    for device in devices:
        rates = {"device": device, "fp32_tflops": matmul_rate(device) / 1e12,
                 "bf16_tflops": matmul_rate(device, torch.bfloat16) / 1e12}
        result["matmul"].append(rates)
        log(f"{device}: matmul {rates['fp32_tflops']:.2f} TFLOP/s fp32, {rates['bf16_tflops']:.2f} TFLOP/s bf16")
        result["dcn"].extend(dcn_speed(device, log))
        on_cpu = device == "cpu"
        for preset in presets:
            heavy = preset == "paper" and on_cpu
            sizes = [(128, 128), (256, 256)] if heavy else [(384, 512), (768, 1024)]
            sizes = sizes[:1] if heavy and quick else sizes
            for task in tasks:
                torch.manual_seed(0)
                model = build_model(preset, task)
                for h, w in sizes:
                    img = random_image(h, w)
                    for path in paths:
                        result["throughput"].append(throughput_row(model, path, device, img, preset, task, repeats,
                                                                   log))
                if tile_sweep:
                    result["tile_sweep"].extend(sweep_tiles(model, preset, task, device, log))
                small = 128 if heavy else 256
                result["shortcut"].append(shortcut_speedup(preset, task, device, small, repeats, log))
                tiling_size = small if heavy and quick else 2 * small
                result["tiling"].append(tiling_overhead(model, preset, task, device, tiling_size, repeats, log))
        if photo_megapixels:
            result["photo"].extend(photo_memory(device, photo_megapixels, tasks, log))
    for preset in presets:
        for task in tasks:
            fpp = flops_per_input_pixel(preset, task)
            entry = {"preset": preset, "task": task, "gflop_per_input_pixel": fpp / 1e9,
                     "parameters": parameter_count(build_model(preset, task))}
            result["flops"].append(entry)
            log(f"{preset:5} {task:7} {fpp / 1e6:9.1f} MFLOP per input pixel")
    attach_achieved_fraction(result)
    for row in result["throughput"]:
        log(f"{row['preset']:5} {row['task']:7} {row['path']:7} {row['input_size']:>9}  {row['seconds']:7.2f} s  "
            f"{row['achieved_tflops'] * 1e3:6.1f} GFLOP/s = {row['fraction_of_matmul'] * 100:4.1f}% of fp32 matmul")
    return result


def dcn_speed(device: str, log: Callable[[str], None]) -> list[dict]:
    """Both DCN implementations on the PTB shapes of each preset, forward and forward + backward."""
    rows = []
    for preset, channels, groups, size in (("lite", 32, 4, 192), ("paper", 64, 8, 128)):
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(1, channels, size, size, generator=gen).to(device).requires_grad_()
        offset = (torch.randn(1, 18 * groups, size, size, generator=gen) * 2).to(device).requires_grad_()
        mask = torch.rand(1, 9 * groups, size, size, generator=gen).to(device).requires_grad_()
        weight = (torch.randn(channels, channels, 3, 3, generator=gen) * 0.05).to(device).requires_grad_()
        entry: dict[str, Any] = {"preset": preset, "device": device, "channels": channels, "groups": groups,
                                 "size": size}
        for impl in ("torchvision", "grid_sample"):
            def forward():
                with torch.no_grad():
                    modulated_deform_conv3x3(x, offset, mask, weight, impl=impl)

            def forward_backward():
                modulated_deform_conv3x3(x, offset, mask, weight, impl=impl).sum().backward()

            entry[f"{impl}_forward_s"] = timed(forward, repeats=3)
            entry[f"{impl}_train_s"] = timed(forward_backward, repeats=3)
        rows.append(entry)
        log(f"DCN {preset:5} C{channels} G{groups} {size}px: forward {entry['torchvision_forward_s'] * 1e3:.0f} -> "
            f"{entry['grid_sample_forward_s'] * 1e3:.0f} ms, forward+backward {entry['torchvision_train_s'] * 1e3:.0f}"
            f" -> {entry['grid_sample_train_s'] * 1e3:.0f} ms (torchvision -> grid_sample)")
    return rows


def throughput_row(model: EDPN, path: RestorePath, device: str, img: np.ndarray, preset: Preset,
                   task: Task, repeats: int, log: Callable[[str], None]) -> dict:
    """One default-settings restore (automatic tile) of `img` along `path`."""
    restorer = path.restorer(model, device)
    run = path.run_settings(restorer)
    h, w = img.shape[:2]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    with dcn_implementation(path.dcn):
        seconds = timed(lambda: restorer.restore_array(img, run), repeats,
                        warm_up=lambda: restorer.restore_array(random_image(32, 32), run))
    out_mp = h * w * restorer.scale**2 / 1e6
    row = {"preset": preset, "task": task, "path": path.name, "device": device,
           "device_name": describe_device(restorer.device), "precision": restorer.precision, "tile": run.tile,
           "input_size": f"{w}x{h}", "input_megapixels": h * w / 1e6, "output_megapixels": out_mp, "seconds": seconds,
           "output_mp_per_s": out_mp / seconds, "peak_rss_mib": peak_rss_mib(),
           "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None}
    log(f"{preset:5} {task:7} {path.name:7} {row['precision']:4} tile {run.tile:4} {row['input_size']:>9}  "
        f"{seconds:7.2f} s  RSS {row['peak_rss_mib']:6.0f} MiB")
    return row


def sweep_tiles(model: EDPN, preset: Preset, task: Task, device: str, log: Callable[[str], None]) -> list[dict]:
    """Seconds per input pixel that a tile of each size contributes once its overlap is paid for: what the
    CPU's automatic tile (CPU_TILE_WORKING_SET) was chosen from."""
    restorer = CURRENT_PATH.restorer(model, device)
    sizes = (96, 128, 192, 256, 384) if preset == "paper" else (96, 128, 192, 256, 384, 512)
    rows = []
    for size in sizes:
        img = random_image(size, size)
        seconds = timed(lambda: restorer.restore_array(img, RunSettings("whole")), repeats=2)
        useful = (size - DEFAULT_OVERLAP) ** 2
        cfg = restorer.models[0].cfg
        entry = {"preset": preset, "task": task, "device": device, "tile": size, "seconds": seconds,
                 "us_per_useful_input_px": seconds / useful * 1e6,
                 "largest_activation_mb": size**2 * 4 * largest_activation_channels(cfg) / 1e6}
        rows.append(entry)
        log(f"{preset:5} {task:7} tile {size:4}: {entry['us_per_useful_input_px']:6.2f} us per useful input px "
            f"(largest activation {entry['largest_activation_mb']:.0f} MB)")
    return rows


def shortcut_speedup(preset: Preset, task: Task, device: str, size: int, repeats: int, log) -> dict:
    """Same weights, literal K+1 path vs the shortcut (identical copies computed once)."""
    torch.manual_seed(0)
    fast = build_model(preset, task)
    literal = build_model(preset, task, replica_shortcut=False)
    literal.load_state_dict(fast.state_dict())
    img = random_image(size, size)
    times = {}
    for name, model in (("shortcut", fast), ("literal", literal)):
        restorer = Restorer(models=[model], device=device)
        times[name] = timed(lambda: restorer.restore_array(img, RunSettings("whole")), repeats)
    entry = {"preset": preset, "task": task, "device": device, "size": size, "shortcut_s": times["shortcut"],
             "literal_s": times["literal"], "speedup": times["literal"] / times["shortcut"]}
    log(f"{preset:5} {task:7} replica shortcut at {size}px: {entry['speedup']:.2f}x faster")
    return entry


def tiling_overhead(model: EDPN, preset: Preset, task: Task, device: str, size: int, repeats: int,
                    log) -> dict:
    img = random_image(size, size)
    restorer = Restorer(models=[model], device=device)
    whole = timed(lambda: restorer.restore_array(img, RunSettings("whole")), repeats)
    tile = size // 2
    tiled = timed(lambda: restorer.restore_array(img, RunSettings(tile)), repeats)
    entry = {"preset": preset, "task": task, "size": size, "tile": tile, "whole_s": whole, "tiled_s": tiled,
             "overhead": tiled / whole - 1}
    log(f"{preset:5} {task:7} tiling {size}px in {tile}px tiles: {entry['overhead'] * 100:+.0f}% time")
    return entry


def photo_memory(device: str, megapixels: float, tasks, log) -> list[dict]:
    """Peak memory of a real-size photo with the lite preset and automatic tiles (output MP for sr)."""
    rows = []
    for task in tasks:
        scale = TASK_SCALES[task]
        pixels = megapixels * 1e6 / scale**2
        w = int((pixels * 4 / 3) ** 0.5)
        h = int(pixels / w)
        img = random_image(h, w)
        torch.manual_seed(0)
        restorer = Restorer(models=[build_model("lite", task)], device=device)
        reset_peak_rss()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        restorer.restore_array(img)
        seconds = time.perf_counter() - start
        entry = {"task": task, "device": device, "input": f"{w}x{h}", "output_megapixels": h * w * scale**2 / 1e6,
                 "tile": restorer.auto_tile(), "seconds": seconds, "peak_rss_mib": peak_rss_mib(),
                 "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None}
        rows.append(entry)
        log(f"lite  {task:7} {entry['output_megapixels']:.1f} MP output photo: {seconds:.1f} s, "
            f"peak RSS {entry['peak_rss_mib']:.0f} MiB")
    return rows


def attach_achieved_fraction(result: dict) -> None:
    """Model FLOP/s achieved, as a fraction of this machine's fp32 matmul rate measured in the same run, and on
    GPUs of the card's data-sheet bf16/fp16 peak. Rows and rates meet on the device name the run was given
    ("cpu", "cuda", "cuda:0")."""
    flops = {(f["preset"], f["task"]): f["gflop_per_input_pixel"] * 1e9 for f in result["flops"]}
    matmul = {m["device"]: m["fp32_tflops"] * 1e12 for m in result["matmul"]}
    for row in result["throughput"]:
        achieved = flops[(row["preset"], row["task"])] * row["input_megapixels"] * 1e6 / row["seconds"]
        row["achieved_tflops"] = achieved / 1e12
        row["fraction_of_matmul"] = achieved / matmul[row["device"]]
        peak = next((p for name, p in KNOWN_PEAKS.items() if name in row["device_name"]), None)
        row["fraction_of_peak"] = achieved / peak if peak else None


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path
