"""Training iterations per minute of CPU recipes (ranks x threads per rank x batch per rank), measured one
after the other in the same run on the same machine, for docs/BENCHMARKS.md.

    python tools/train_throughput.py --data data/photos/train --recipes 1x2x4 2x1x2 --tasks sr deblock

Each recipe runs `torchrun --nproc-per-node RANKS` with OMP_NUM_THREADS=THREADS; after a few warm-up
iterations, rank 0 times the next ones (data loading included, start-up and checkpoints not). Every recipe
has the same effective batch when RANKS x BATCH is equal. `--paths before now` also times the CPU path from
before the fast path (torchvision's deformable convolution, no bf16 autocast) beside today's.

The warm-up lasts, unless `--warmup` says otherwise, until every photo has been drawn once: the dataset keeps
decoded photos in memory, and a patch from a photo not yet decoded costs a whole-PNG decode (about 60 ms on a
2-core machine, a third of a lite step) that a training run pays only in its first pass.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LQ_PATCH = {"sr": 48, "deblock": 64}  # the shipped lite recipe's patches (weights/README.md)


def worker(settings: dict, warmup: int, timed: int, result: Path, dcn: str) -> None:
    """One rank of a measurement (run under torchrun)."""
    import torch

    from edpn_core.archs.dcn import dcn_implementation
    from edpn_core.heap import keep_freed_memory
    from edpn_core.training import TrainConfig, Trainer

    keep_freed_memory()  # as the `edpn` program does
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    trainer = Trainer(TrainConfig().updated(**settings))
    finished, step = [], trainer.step

    def timed_step(batch: dict) -> dict:
        logs = step(batch)
        finished.append(time.monotonic())
        return logs

    trainer.step = timed_step
    with dcn_implementation(dcn):
        trainer.fit(until=warmup + timed, show_progress=False)
    # From the end of the last warm-up step to the end of the last step: data loading included, start-up not.
    rate = timed * 60 / (finished[-1] - finished[warmup - 1])
    if trainer.rank == 0:
        result.write_text(json.dumps({"iterations_per_minute": rate}))


# (DCN implementation, bf16 autocast where the CPU has it) of each path.
PATHS = {"now": ("auto", True), "before": ("torchvision", False)}


def measure(recipe: str, task: str, path: str, args: argparse.Namespace, scratch: Path) -> float:
    from edpn_core.training.data import list_images

    ranks, threads, batch = (int(part) for part in recipe.split("x"))
    warmup = args.warmup or math.ceil(len(list_images(args.data)) / (ranks * batch)) + 1
    dcn, bf16 = PATHS[path]
    settings = {"preset": args.preset, "task": task, "data": str(args.data), "lq_patch": LQ_PATCH[task],
                "batch_size": batch, "iterations": 10**6, "checkpoint_every": 10**6, "tensorboard": False,
                "bf16": bf16, "out_dir": str(scratch / f"{task}-{recipe}-{path}")}
    result = scratch / f"{task}-{recipe}-{path}.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
                    __file__, "--worker", json.dumps(settings), "--warmup", str(warmup), "--timed",
                    str(args.timed), "--result", str(result), "--dcn", dcn], env=env, check=True)
    return json.loads(result.read_text())["iterations_per_minute"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="folder of sharp training photos")
    p.add_argument("--preset", default="lite", choices=["lite", "paper"])
    p.add_argument("--tasks", nargs="+", default=["sr", "deblock"], choices=["sr", "deblock"])
    p.add_argument("--recipes", nargs="+", default=["1x2x4", "2x1x2", "1x1x4"], help="RANKSxTHREADSxBATCH")
    p.add_argument("--warmup", type=int, help="untimed iterations first (default: until every photo was drawn once)")
    p.add_argument("--timed", type=int, default=20)
    p.add_argument("--paths", nargs="+", default=["now"], choices=list(PATHS))
    p.add_argument("--json", type=Path, help="also write the table here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--dcn", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(json.loads(args.worker), args.warmup, args.timed, args.result, args.dcn)
        return 0
    if args.data is None:
        p.error("--data is required")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edpn-throughput-") as scratch:
        for task in args.tasks:
            for recipe in args.recipes:
                for path in args.paths:
                    rate = measure(recipe, task, path, args, Path(scratch))
                    ranks, _, batch = (int(part) for part in recipe.split("x"))
                    rows.append({"task": task, "recipe": recipe, "path": path, "effective_batch": ranks * batch,
                                 "iterations_per_minute": round(rate, 1)})
                    print(f"{args.preset} {task} {recipe} {path}: {rate:.1f} iterations per minute", flush=True)
    print("| task | ranks x threads x batch | path | effective batch | iterations per minute |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['task']} | {row['recipe']} | {row['path']} | {row['effective_batch']} | "
              f"{row['iterations_per_minute']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
