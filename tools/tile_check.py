"""Whole-photo restore time by tile size, at the sizes the CPU-speed issue targets (deblock 1024x768, sr 512x384).

`edpn bench --tile-sweep` times single tiles; this times what a user waits for (balanced tiles, their overlap
and blending) to check the automatic tile against its neighbours. Run it on a quiet machine:

    python tools/tile_check.py data/report-clean --repeats 3 --json docs/tile-check-avx2.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from edpn_core import Restorer, RunSettings, load_image
from edpn_core.resources import shipped_weights

SIZES = {"deblock": ((768, 1024), (192, 256, 296, 360)), "sr": ((384, 512), (160, 192, 224, 268))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="folder of photos; the first (by name) is cropped to each size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--tasks", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photo = load_image(sorted(p for p in args.photos.iterdir() if p.is_file())[0]).rgb
    rows = []
    for task in args.tasks:
        (height, width), tiles = SIZES[task]
        image = np.ascontiguousarray(photo[:height, :width])
        restorer = Restorer(shipped_weights(task)["lite"])
        auto = restorer.auto_tile()
        restorer.restore_array(image[:128, :128], RunSettings(64))  # first-call set-up kept out of the timings
        for tile in sorted({*tiles, auto}):
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                restorer.restore_array(image, RunSettings(tile), bit_depth=8)
                seconds.append(time.perf_counter() - start)
            rows.append({"task": task, "input": f"{width}x{height}", "tile": tile, "automatic": tile == auto,
                         "min_s": min(seconds), "all_s": seconds})
            print(f"{task:7} {width}x{height} tile {tile:4}{' (auto)' if tile == auto else '       '}: "
                  f"min {min(seconds):.2f} s of {', '.join(f'{s:.2f}' for s in seconds)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
