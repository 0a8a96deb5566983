"""`edpn bench`: measured throughput, replica-shortcut speed-up, tiling overhead, peak memory and FLOPs."""
from __future__ import annotations

import json
import platform
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .engine import Restorer, describe_device
from .model_io import build_model, parameter_count

# Dense fp16/bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, for the achieved fraction.
KNOWN_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "4090": 165e12}


@dataclass
class BenchRow:
    preset: str
    task: str
    device: str
    input_size: str
    output_megapixels: float
    seconds: float
    output_mp_per_s: float
    peak_rss_mib: float
    peak_cuda_mib: float | None


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


def flops_per_input_pixel(preset: str, task: str, size: int = 64) -> float:
    """Counted by running the model under FlopCounterMode (deformable convs added by their own formula)."""
    model = build_model(preset, task).eval()
    mapping = {torch.ops.torchvision.deform_conv2d.default: deform_conv_flops}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter, torch.no_grad():
        model(torch.rand(1, 3, size, size))
    return counter.get_total_flops() / size**2


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random image: the speed does not depend on content, but NaN-free realistic ranges help."""
    rng = np.random.default_rng(seed)
    small = rng.random((max(h // 16, 2), max(w // 16, 2), 3), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.insert(0, "cuda")
    return devices


def run_bench(quick: bool = False, presets=("lite", "paper"), tasks=("sr", "deblock"), devices=None,
              photo_megapixels: float = 0.0, log: Callable[[str], None] = print) -> dict:
    devices = devices or available_devices()
    repeats = 1 if quick else 3
    result: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                                "torch": torch.__version__, "threads": torch.get_num_threads()},
                    "throughput": [], "shortcut": [], "tiling": [], "flops": [], "photo": []}
    for device in devices:
        on_cpu = device == "cpu"
        for preset in presets:
            heavy = preset == "paper" and on_cpu
            sizes = [(128, 128)] if heavy and quick else [(256, 256), (512, 512), (768, 1024)]
            if heavy and not quick:
                sizes = sizes[:2]
            for task in tasks:
                torch.manual_seed(0)
                model = build_model(preset, task)
                restorer = Restorer(models=[model], device=device, tile=0)
                for h, w in sizes:
                    img = random_image(h, w)
                    if device == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    reset_peak_rss()
                    seconds = timed(lambda: restorer.restore_array(img), repeats,
                                    warm_up=lambda: restorer.restore_array(random_image(32, 32)))
                    out_mp = h * w * restorer.scale**2 / 1e6
                    row = BenchRow(preset, task, describe_device(restorer.device), f"{w}x{h}", out_mp, seconds,
                                   out_mp / seconds, peak_rss_mib(),
                                   torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None)
                    result["throughput"].append(asdict(row))
                    log(f"{preset:5} {task:7} {row.device:28} {row.input_size:>9}  {seconds:7.2f} s  "
                        f"{row.output_mp_per_s:7.3f} MP/s out  RSS {row.peak_rss_mib:7.0f} MiB")
                small = 128 if heavy else 256
                result["shortcut"].append(shortcut_speedup(preset, task, device, small, repeats, log))
                tiling_size = small if heavy and quick else 2 * small
                result["tiling"].append(tiling_overhead(restorer, preset, task, tiling_size, repeats, log))
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
    return result


def shortcut_speedup(preset: str, task: str, device: str, size: int, repeats: int, log) -> dict:
    """Same weights, literal K+1 path vs the shortcut (identical copies computed once)."""
    torch.manual_seed(0)
    fast = build_model(preset, task)
    literal = build_model(preset, task, replica_shortcut=False)
    literal.load_state_dict(fast.state_dict())
    img = random_image(size, size)
    times = {}
    for name, model in (("shortcut", fast), ("literal", literal)):
        restorer = Restorer(models=[model], device=device, tile=0)
        times[name] = timed(lambda: restorer.restore_array(img), repeats)
    entry = {"preset": preset, "task": task, "device": device, "size": size, "shortcut_s": times["shortcut"],
             "literal_s": times["literal"], "speedup": times["literal"] / times["shortcut"]}
    log(f"{preset:5} {task:7} replica shortcut at {size}px: {entry['speedup']:.2f}x faster")
    return entry


def tiling_overhead(restorer: Restorer, preset: str, task: str, size: int, repeats: int, log) -> dict:
    img = random_image(size, size)
    whole = timed(lambda: restorer.restore_array(img), repeats)
    tile = size // 2
    tiled_restorer = Restorer(models=restorer.models, device=restorer.device.type, tile=tile)
    tiled = timed(lambda: tiled_restorer.restore_array(img), repeats)
    entry = {"preset": preset, "task": task, "size": size, "tile": tile, "whole_s": whole, "tiled_s": tiled,
             "overhead": tiled / whole - 1}
    log(f"{preset:5} {task:7} tiling {size}px in {tile}px tiles: {entry['overhead'] * 100:+.0f}% time")
    return entry


def photo_memory(device: str, megapixels: float, tasks, log) -> list[dict]:
    """Peak memory of a real-size photo with the lite preset and automatic tiles (output MP for sr)."""
    rows = []
    for task in tasks:
        scale = 4 if task == "sr" else 1
        pixels = megapixels * 1e6 / scale**2
        w = int((pixels * 4 / 3) ** 0.5)
        h = int(pixels / w)
        img = random_image(h, w)
        torch.manual_seed(0)
        restorer = Restorer(models=[build_model("lite", task)], device=device)
        reset_peak_rss()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        restorer.restore_array(img)
        seconds = time.perf_counter() - start
        entry = {"task": task, "device": device, "input": f"{w}x{h}", "output_megapixels": h * w * scale**2 / 1e6,
                 "tile": restorer.auto_tile(), "seconds": seconds, "peak_rss_mib": peak_rss_mib(),
                 "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None}
        rows.append(entry)
        log(f"lite  {task:7} {entry['output_megapixels']:.1f} MP output photo: {seconds:.1f} s, "
            f"peak RSS {entry['peak_rss_mib']:.0f} MiB")
    return rows


def attach_achieved_fraction(result: dict) -> None:
    """Achieved FLOP/s against the device's known peak (GPUs only; CPUs vary too much to name one)."""
    flops = {(f["preset"], f["task"]): f["gflop_per_input_pixel"] * 1e9 for f in result["flops"]}
    for row in result["throughput"]:
        scale = 16 if row["task"] == "sr" else 1
        achieved = flops[(row["preset"], row["task"])] * row["output_mp_per_s"] * 1e6 / scale
        row["achieved_tflops"] = achieved / 1e12
        peak = next((p for name, p in KNOWN_PEAKS.items() if name in row["device"]), None)
        row["fraction_of_peak"] = achieved / peak if peak else None


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path
