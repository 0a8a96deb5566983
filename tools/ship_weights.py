"""Turn a training checkpoint into shipped weights: float16 safetensors whose metadata holds the `edpn eval`
scores of that very file (scored after the float16 rounding, so the model card never quotes other weights).
A checkpoint's weights are its EMA when the run kept one (what its validation scored), e.g. best.pth.

    python tools/ship_weights.py runs/lite-sr/checkpoint.pth weights/edpn-lite-sr.safetensors \\
        --val data/photos/report --training-data "..." --recipe '{"lr": 2e-4}' --eval-json docs/eval-lite-sr.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

from edpn_core.cli import main as edpn
from edpn_core.model_io import load_model, save_weights


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="training checkpoint (.pth) or weights (.safetensors)")
    p.add_argument("out", type=Path, help="the .safetensors to write")
    p.add_argument("--val", type=Path, required=True, help="folder of validation photos never used in training")
    p.add_argument("--crop", type=int, default=384)
    p.add_argument("--crops-per-photo", type=int, default=2)
    p.add_argument("--items", type=int, help="score only the first N crops (a quick check, not for the card)")
    p.add_argument("--training-data", required=True, help="what the network was trained on, for the model card")
    p.add_argument("--recipe", required=True, help="JSON: how it was trained")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="any further metadata")
    p.add_argument("--eval-json", type=Path, help="also keep the scores here")
    args = p.parse_args()

    model, info = load_model(args.checkpoint)
    meta = {"iterations": info.metadata["iterations"], "date": date.today().isoformat(),
            "training_data": args.training_data, "recipe": json.loads(args.recipe),
            **dict(item.split("=", 1) for item in args.meta)}
    save_weights(model, args.out, info.preset, half=True, **meta)
    with tempfile.TemporaryDirectory() as tmp:
        scores_path = args.eval_json or Path(tmp) / "scores.json"
        command = ["eval", str(args.val), "--weights", str(args.out), "--crop", str(args.crop), "--crops-per-photo",
                   str(args.crops_per_photo), "--ensemble", "--device", "cpu", "--json", str(scores_path)]
        if args.items:
            command[-2:-2] = ["--items", str(args.items)]
        status = edpn(command)
        if status != 0:
            return status
        report = json.loads(scores_path.read_text())
    shipped, _ = load_model(args.out)
    # The summaries (all, per input format, per blur family); the per-condition rows stay in --eval-json.
    summaries = {name: group for name, group in report["groups"].items() if " / " not in name}
    metrics = {"validation": "edpn " + " ".join(command[:-2]), "groups": summaries}
    save_weights(shipped, args.out, info.preset, half=True, metrics=metrics, **meta)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
