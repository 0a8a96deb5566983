"""Train on a borrowed GPU machine that runs one command at a time for at most ten minutes, receives the
working tree plus a few carried folders (64 MiB), and sends back at most 8 files of 16 MiB from $OUT.

1. Here: pack the photos (lossless crops, 40 MiB or less in all; pack/ is git-ignored, carry it):

       python tools/gpu_train.py pack data/photos/train --select data/photos/select --dest pack/gpu

2. There, as many times as needed (each call resumes the checkpoint left in runs/, which is git-ignored and
   stays on the machine between calls while it is held; it ends well inside ten minutes):

       python tools/gpu_train.py chunk --out $OUT --name paper-sr --budget 480 -- \\
           --preset paper --task sr --data pack/gpu/train/crops --val-data pack/gpu/select/crops \\
           --iterations 100000 --lq-patch 64 --workers 8 --out-dir runs/gpu-paper-sr

   $OUT receives the EMA weights in float16, split into parts of at most 16 MiB, a SHA-256 manifest, and
   the chunk's summary (iteration, validation scores).

3. Here: reassemble and check the weights the last call brought back:

       python tools/gpu_train.py join FILES_AT/paper-sr.safetensors.manifest.json weights/edpn-paper-sr.safetensors

If the machine was given back in between, runs/ is gone: start the next chunk from the reassembled weights
with `--init-weights` (Adam restarts) instead of resuming.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from edpn_core.cli import build_parser
from edpn_core.cli import main as edpn

MIB = 2**20
MAX_FILES = 8  # what one call brings back from $OUT: the parts, their manifest and the summary


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(path: Path, dest: Path, part_mib: float) -> Path:
    """path as parts of at most part_mib MiB in dest, with a manifest of their order and checksums."""
    data, size = path.read_bytes(), int(part_mib * MIB)
    if -(-len(data) // size) + 2 > MAX_FILES:
        raise ValueError(f"{path.name}: {len(data) / MIB:.1f} MiB needs more than {MAX_FILES - 2} parts of "
                         f"{part_mib} MiB")
    parts = []
    for index, start in enumerate(range(0, len(data), size)):
        part = dest / f"{path.name}.part{index:02d}"
        part.write_bytes(data[start:start + size])
        parts.append({"file": part.name, "sha256": sha256(data[start:start + size])})
    manifest = dest / f"{path.name}.manifest.json"
    manifest.write_text(json.dumps({"file": path.name, "bytes": len(data), "sha256": sha256(data), "parts": parts},
                                   indent=2))
    return manifest


def join(manifest_path: Path, out: Path) -> Path:
    """The file a manifest describes, from the parts beside it; refused unless every checksum matches."""
    manifest = json.loads(manifest_path.read_text())
    chunks = []
    for part in manifest["parts"]:
        chunk = (manifest_path.parent / part["file"]).read_bytes()
        if sha256(chunk) != part["sha256"]:
            raise ValueError(f"{part['file']}: checksum mismatch (incomplete copy?)")
        chunks.append(chunk)
    data = b"".join(chunks)
    if len(data) != manifest["bytes"] or sha256(data) != manifest["sha256"]:
        raise ValueError(f"{manifest['file']}: reassembled file does not match its checksum")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def cmd_pack(args: argparse.Namespace) -> int:
    from edpn_core.training.photos import pack_photos

    select_mib = args.select_mib if args.select else 0.0
    train = pack_photos(args.photos, args.dest / "train", max_mib=args.max_mib - select_mib)
    print(f"{len(train)} training crops in {args.dest / 'train'}")
    if args.select:
        select = pack_photos(args.select, args.dest / "select", max_mib=select_mib)
        print(f"{len(select)} checkpoint-selection crops in {args.dest / 'select'}")
    total = sum(f.stat().st_size for f in args.dest.rglob("*") if f.is_file()) / MIB
    print(f"{args.dest}: {total:.1f} MiB; carry it to the GPU machine")
    return 0


def cmd_chunk(args: argparse.Namespace) -> int:
    train_args = build_parser().parse_args(["train", *args.train_args])
    out_dir = Path(train_args.out_dir or "runs/edpn")
    resume = ["--resume"] if (out_dir / "checkpoint.pth").is_file() else []
    with tempfile.TemporaryDirectory(prefix="edpn-chunk-") as tmp:
        weights = Path(tmp) / f"{args.name}.safetensors"
        status = edpn(["train", *args.train_args, *resume, "--time-limit", str(args.budget), "--no-progress",
                       "--export", str(weights)])
        if status != 0:
            return status
        args.out.mkdir(parents=True, exist_ok=True)
        manifest = split(weights, args.out, args.part_mib)
    from edpn_core.training.checkpoint import read_checkpoint

    state = read_checkpoint(out_dir / "checkpoint.pth")
    summary = {"iteration": state["iteration"], "best": state.get("best", {}), "resumed": bool(resume)}
    (args.out / f"{args.name}.summary.json").write_text(json.dumps(summary, indent=2))
    print(f"iteration {state['iteration']}; weights in {manifest}")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from edpn_core.model_io import read_weights_info

    out = join(args.manifest, args.out)
    info = read_weights_info(out)
    print(f"{out}: preset {info.preset}, task {info.task}, iterations {info.metadata.get('iterations')}, "
          f"checksum verified")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("pack", help="pack training (and selection) photos within --max-mib")
    s.add_argument("photos", type=Path)
    s.add_argument("--select", type=Path, help="photos that pick checkpoints (not the ones a report scores)")
    s.add_argument("--dest", type=Path, default=Path("pack/gpu"))
    s.add_argument("--max-mib", type=float, default=40.0)
    s.add_argument("--select-mib", type=float, default=6.0, help="share of --max-mib for --select")
    s.set_defaults(run=cmd_pack)
    s = sub.add_parser("chunk", help="train (resuming if runs/ holds a checkpoint) for --budget seconds")
    s.add_argument("--out", type=Path, required=True, help="the folder that goes back ($OUT)")
    s.add_argument("--name", required=True, help="file name of the weights, e.g. paper-sr")
    s.add_argument("--budget", type=float, default=480.0, help="seconds of training (the call's limit is 600)")
    s.add_argument("--part-mib", type=float, default=16.0)
    s.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then `edpn train` options")
    s.set_defaults(run=cmd_chunk)
    s = sub.add_parser("join", help="reassemble weights from their parts and verify the checksums")
    s.add_argument("manifest", type=Path)
    s.add_argument("out", type=Path)
    s.set_defaults(run=cmd_join)
    args = p.parse_args(argv)
    if args.command == "chunk" and args.train_args[:1] == ["--"]:
        args.train_args = args.train_args[1:]
    try:
        return args.run(args)
    except ValueError as exc:
        print(f"gpu_train {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
