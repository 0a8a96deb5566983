"""Turn a training checkpoint into shipped weights: float16 safetensors whose metadata holds the `edpn eval`
scores of that very file (scored after the float16 rounding, so the model card never quotes other weights).

    python tools/ship_weights.py runs/lite-sr/checkpoint.pth weights/edpn-lite-sr.safetensors \\
        --val data/photos/val --training-data "..." --recipe '{"lr": 2e-4}' --eval-json docs/eval-lite-sr.json
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from edpn_core.engine import Restorer
from edpn_core.evaluate import eval_pairs, evaluate, format_table
from edpn_core.model_io import load_model, save_weights


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="training checkpoint (.pth) or weights (.safetensors)")
    p.add_argument("out", type=Path, help="the .safetensors to write")
    p.add_argument("--val", type=Path, required=True, help="folder of validation photos never used in training")
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--items", type=int, default=10)
    p.add_argument("--training-data", required=True, help="what the network was trained on, for the model card")
    p.add_argument("--recipe", required=True, help="JSON: how it was trained")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="any further metadata")
    p.add_argument("--eval-json", type=Path, help="also write the scores here")
    args = p.parse_args()

    model, info = load_model(args.checkpoint)
    meta = {"iterations": info.metadata["iterations"], "date": date.today().isoformat(),
            "training_data": args.training_data, "recipe": json.loads(args.recipe),
            **dict(item.split("=", 1) for item in args.meta)}
    save_weights(model, args.out, info.preset, half=True, **meta)
    restorer = Restorer(args.out, device="cpu", tile=0)
    pairs = eval_pairs(args.val, restorer.task, crop=args.crop, items=args.items)
    rows = evaluate(restorer, pairs, on_item=lambda name, i, n: print(f"\r{name}: {i}/{n}", end="", file=sys.stderr))
    print(file=sys.stderr)
    print(format_table(rows))
    scores = [row.as_dict() for row in rows]
    metrics = {"validation": f"edpn eval {args.val} --crop {args.crop} --items {args.items}", "rows": scores}
    save_weights(restorer.models[0], args.out, info.preset, half=True, metrics=metrics, **meta)
    if args.eval_json:
        args.eval_json.write_text(json.dumps(scores, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
