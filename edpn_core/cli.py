"""`edpn`: restore, train, campaign, eval, bench, info and data commands. Exit 0 on success, 1 when some inputs failed,
2 for usage errors (bad options, unusable weights or images), 3 for an unexpected error (a bug: one line names
the file holding the full traceback), 130 on Ctrl+C, 143 on SIGTERM, and 141, silently, when the output's reader stops
early (`| head`). Every failure is one line on stderr."""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import signal
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NoReturn, Sequence

if TYPE_CHECKING:
    from .inference.engine import TileSize

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_UNEXPECTED = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_BROKEN_PIPE = 130, 143, 141  # 128 + the signal, as a shell reports
WEIGHTS_SUFFIXES = (".safetensors", ".pth")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds (temp files removed) exactly as Ctrl+C does."""


def _tile_size(text: str) -> TileSize:
    from .inference.engine import parse_tile

    try:
        return parse_tile(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _max_megapixels(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .archs.dcn import DCN_IMPLS
    from .config import PRESETS, TASKS
    from .evaluate import FAMILY_BLURS
    from .inference.engine import ENSEMBLES, TILE_POLICIES
    from .inference.imageio import SAVE_FORMATS
    from .inference.precision import PRECISIONS
    from .training.config import DATA_KINDS, SCHEDULES

    parser = argparse.ArgumentParser(prog="edpn", description="Restore blurry photos with EDPN.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("restore", help="restore images or folders of images")
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--task", choices=TASKS, required=True,
                   help="sr: blurry super-resolution x4; deblock: blurry JPEG deblocking")
    p.add_argument("--ensemble", choices=list(ENSEMBLES), default="off",
                   help="self-ensemble: x4 averages four rotations (paper), x8 adds mirrors")
    p.add_argument("--strength", type=float, default=100.0,
                   help="percent of the restoration over the input (sr: its bicubic upscale, as the network's "
                        "base); below 100 tones down a result too strong for a photo (default 100)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: fp16 on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32")
    p.add_argument("--tile", type=_tile_size, default="auto",
                   help="auto (sized from free memory, the default), whole (the image in one piece) or a size in "
                        "input pixels (at least 32)")
    p.add_argument("--weights", type=Path, nargs="+", help="weights file(s); several = model-ensemble")
    p.add_argument("--format", default="png", choices=list(SAVE_FORMATS))
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (1-100)")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--skip-existing", dest="existing", action="store_const", const="skip", default="refuse",
                          help="leave outputs that already exist")
    existing.add_argument("--overwrite", dest="existing", action="store_const", const="overwrite",
                          help="replace existing outputs (never an input)")
    p.add_argument("--max-megapixels", type=_max_megapixels, default=None,
                   help="refuse larger inputs (default: EDPN_MAX_MEGAPIXELS, else 100)")

    p = sub.add_parser("train", help="train a network (paper network and loss; warmup + cosine schedule by default)")
    p.add_argument("--config", type=Path, help="TOML file of training settings")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--task", choices=TASKS)
    p.add_argument("--data", help="folder of sharp photos (or REDS root / GT folder, see --data-kind)")
    p.add_argument("--data-kind", choices=DATA_KINDS)
    p.add_argument("--lq-dir", help="degraded folder for --data-kind paired")
    p.add_argument("--val-data", help="sharp photos that pick the best checkpoint: not training photos, and not "
                                      "the photos `edpn eval` reports on")
    p.add_argument("--val-items", type=int, help="validation crops (default 32)")
    p.add_argument("--val-patch", type=int, help="LR size of the validation crops (default 128 sr, 256 deblock)")
    p.add_argument("--iterations", type=int, help="length of the run; the schedule decays to its end")
    p.add_argument("--batch-size", type=int, help="per process: under torchrun the effective batch is this x ranks")
    p.add_argument("--lr", type=float, help="peak learning rate, for the effective batch")
    p.add_argument("--schedule", dest="lr_schedule", choices=SCHEDULES,
                   help="cosine (default) or linear decay to the end, step: the paper's x0.8 every 100k")
    p.add_argument("--warmup", dest="warmup_iterations", type=int, help="linear warmup iterations (default 500)")
    p.add_argument("--grad-clip", type=float, help="max gradient norm (default 1; 0 = off)")
    p.add_argument("--ema-decay", type=float, help="EMA of the weights (default 0.999; 0 = off)")
    p.add_argument("--lq-patch", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--val-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out-dir", help="run folder: checkpoint, best checkpoint, TensorBoard logs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting, VALUE parsed as JSON when it can be")
    p.add_argument("--init-weights", help="start the network from these weights (e.g. a shipped file) to fine-tune")
    p.add_argument("--resume", nargs="?", const="", metavar="CHECKPOINT",
                   help="continue from OUT_DIR/checkpoint.pth (or CHECKPOINT) with its settings; options given "
                        "here change them, except the network (refused) and the schedule (see --new-schedule)")
    p.add_argument("--new-schedule", action="store_true",
                   help="with --resume: follow this command's lr, schedule, warmup and iterations from here on")
    p.add_argument("--until", type=int, help="stop at this iteration (resume later)")
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop with a checkpoint once training has run this long (resume later)")
    p.add_argument("--export", type=Path, help="write the app's .safetensors weights here at the end")
    p.add_argument("--export-weights", choices=["ema", "raw"], default="ema",
                   help="export the EMA of the weights (default, what validation scores) or the last weights")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("campaign", help="the training campaign of the shipped weights, carried across sessions in "
                                        "campaign/ (docs/TRAINING_CAMPAIGN.md)")
    p.add_argument("--root", type=Path, default=Path("campaign"), help="recipe, committed state and log")
    p.add_argument("--runs", type=Path, default=Path("runs/campaign"), help="this session's checkpoints")
    campaign_sub = p.add_subparsers(dest="campaign_command", required=True)
    c = campaign_sub.add_parser("run", help="train every task of the recipe side by side, niced, for --minutes; "
                                            "then write the state back")
    c.add_argument("--minutes", type=float, required=True)
    c.add_argument("--tasks", nargs="+", choices=TASKS)
    c = campaign_sub.add_parser("chunk", help="train one task for --minutes in this process (what run starts)")
    c.add_argument("task", choices=TASKS)
    c.add_argument("--minutes", type=float, required=True)
    c = campaign_sub.add_parser("save", help="write this session's latest checkpoints back to the committed state "
                                             "and log them (safe while a chunk runs)")
    c.add_argument("--tasks", nargs="+", choices=TASKS)
    c = campaign_sub.add_parser("log", help="print the campaign log as a table")
    c.add_argument("--curve", action="store_true", help="print each task's select gain against iterations instead")
    c.add_argument("--groups", action="store_true",
                   help="print each task's gain per blur family and input format at every validation instead "
                        "(recipes whose val_crops is grid)")
    c = campaign_sub.add_parser("compare", help="train the recipe and changes to it (arms) from the same point on as "
                                                "many samples each, and score them on the selection crops in one run")
    c.add_argument("task", choices=TASKS)
    c.add_argument("--arm", action="append", required=True, metavar="SETTING=VALUE[,SETTING=VALUE]",
                   help="a change to the recipe, e.g. lr=5e-4 or batch_size=8,ema_decay=0.998 (repeatable)")
    c.add_argument("--iterations", type=int, required=True,
                   help="the recipe's iterations; every arm trains on as many samples (iterations x batch)")
    c.add_argument("--json", type=Path, help="where the comparison is kept")
    c = campaign_sub.add_parser("adopt", help="continue the campaign from an arm trained beside it (edpn train "
                                              "--resume of the campaign's checkpoint, the recipe's settings) instead "
                                              "of its own chunk")
    c.add_argument("task", choices=TASKS)
    c.add_argument("checkpoint", type=Path, help="the arm's checkpoint.pth")
    c.add_argument("--note", default="", help="kept in the log line: what the arm did that its settings do not show")
    c = campaign_sub.add_parser("ship", help="score the committed state beside the shipped weights in one `edpn eval` "
                                             "run and replace them when it is better (the campaign's shipping rule)")
    c.add_argument("task", choices=TASKS)
    c.add_argument("--iteration", type=int,
                   help="score the EMA this session validated at that iteration instead (edpn campaign log --groups)")
    c.add_argument("--photos", type=Path, default=Path("data/photos/report"), help="the report photos")
    c.add_argument("--crop", type=int, default=256)
    c.add_argument("--json", type=Path, required=True, help="where the scores of both are kept")

    p = sub.add_parser("eval", help="PSNR/SSIM/LPIPS of a model, its self-ensemble and the baseline")
    p.add_argument("data", type=Path, help="folder of sharp photos (degraded with a fixed seed) or GT folder")
    p.add_argument("--weights", type=Path, nargs="+", required=True)
    p.add_argument("--task", choices=TASKS, help="checked against the weights' own task")
    p.add_argument("--lq", type=Path, help="folder of degraded inputs paired with DATA by name")
    p.add_argument("--crop", type=int, default=384,
                   help="GT crop size of the pairs degraded on the fly from sharp photos")
    p.add_argument("--crops-per-photo", type=int, default=2,
                   help="the most detailed non-overlapping crops of each photo")
    p.add_argument("--items", type=int, help="evaluate only the first N crops (each under every condition)")
    p.add_argument("--families", nargs="+", choices=list(FAMILY_BLURS),
                   help="blur families to degrade with (default: all)")
    p.add_argument("--formats", nargs="+", help="input formats: png, jpegNN (default: the task's set)")
    p.add_argument("--ensemble", action="store_true", help="also score the self-ensemble x4")
    p.add_argument("--against", type=Path, nargs="+", default=[], help="other weights to score in the same run")
    p.add_argument("--device", default="auto")
    p.add_argument("--tile", type=_tile_size, default="auto")
    p.add_argument("--json", type=Path, help="also write the table as JSON")
    p.add_argument("--by-photo", action="store_true",
                   help="also print EDPN's gain per photo and blur family, over the baseline and each --against")

    p = sub.add_parser("bench", help="speed and memory figures: a table and a JSON file")
    p.add_argument("--quick", action="store_true", help="fewer sizes and one repeat (< 5 min on a CPU)")
    p.add_argument("--json", type=Path, default=Path("bench.json"))
    p.add_argument("--presets", nargs="+", default=sorted(PRESETS), choices=sorted(PRESETS))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--device", action="append", choices=["cpu", "cuda"], help="default: every device present")
    p.add_argument("--photo-mp", type=float, default=0.0,
                   help="also restore a photo of this many output megapixels and report its peak memory")
    p.add_argument("--dcn", choices=DCN_IMPLS, default="auto",
                   help="deformable conv implementation (auto: grid_sample on the CPU, torchvision on CUDA)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--tile-policy", choices=TILE_POLICIES, default="speed",
                   help="automatic tile: 'speed' (measured CPU optimum) or 'memory' (the earlier 512 px CPU cap)")
    p.add_argument("--compare", action="store_true",
                   help="also run the CPU path before the fast path (torchvision DCN, fp32, memory tiles) beside it")
    p.add_argument("--tile-sweep", action="store_true", help="also time single tiles of several sizes")

    p = sub.add_parser("info", help="devices, shipped weights, or what a weights file / image says of itself")
    p.add_argument("paths", nargs="*", type=Path)

    p = sub.add_parser("data", help="training data tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    f = data_sub.add_parser("fetch-photos", help="gather freely licensed photos from Debian packages")
    f.add_argument("dest", type=Path)
    f.add_argument("--pack", type=Path, help="also write a compact training pack (<= --max-mib) here")
    f.add_argument("--max-mib", type=float, default=40.0)
    f.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of photos held out of training, half to pick checkpoints (select), half for the "
                        "reported figures (report)")
    return parser


def cmd_restore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .inference.batch import BatchSettings, OutputsExist, format_warnings, plan_batch, read_header, run_batch
    from .inference.device import select_device
    from .inference.engine import Progress, Restorer, RunSettings
    from .inference.imageio import check_writable, pixel_limit
    from .resources import default_weights

    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        print(f"edpn restore: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.quality <= 100:
        print("edpn restore: --quality must be between 1 and 100", file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.strength <= 100:
        print("edpn restore: --strength must be between 0 and 100", file=sys.stderr)
        return EXIT_USAGE
    if args.output.exists() and not args.output.is_dir():
        print(f"edpn restore: {args.output}: -o must name a folder, and this is a file", file=sys.stderr)
        return EXIT_USAGE
    device = select_device(args.device)
    weights = args.weights or [default_weights(args.task, device.type)]
    restorer = Restorer(weights, device=str(device), task=args.task, precision=args.precision)
    settings = BatchSettings(args.format, args.quality, args.existing, args.recursive,
                             RunSettings(args.tile, args.ensemble), pixel_limit(args.max_megapixels),
                             strength=args.strength / 100)
    try:
        jobs = plan_batch(args.inputs, args.output, settings)
    except OutputsExist as exc:
        raise ValueError(f"{exc}; use --skip-existing or --overwrite") from None
    check_writable(args.output)
    print(f"{len(jobs)} image(s), {restorer.device_name}, weights {', '.join(str(w) for w in weights)}",
          file=sys.stderr)
    for warning in format_warnings([read_header(job.src) for job in jobs], args.format):
        print(f"note: {warning}", file=sys.stderr)
    files_bar = tqdm(total=len(jobs), unit="file", position=0, desc="overall", file=sys.stderr)
    tiles_bar = tqdm(total=1.0, position=1, leave=False, file=sys.stderr,
                     bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")

    def on_file(index, count, job):
        files_bar.n = index
        files_bar.refresh()
        tiles_bar.set_description_str(job.src.name)
        tiles_bar.n = 0

    fallbacks: set[str] = set()

    def on_progress(p: Progress) -> None:
        if p.fallback is not None:
            fallbacks.add(p.fallback.reason)
        tiles_bar.n = p.fraction
        tiles_bar.set_postfix_str(f"tile {p.tiles_done}/{p.tiles_total}, ETA {p.eta_s or 0:.0f}s {p.message}")

    failures: list[str] = []
    try:
        try:
            report = run_batch(restorer, jobs, settings, on_file=on_file, progress=on_progress,
                               on_failure=lambda _, reason: failures.append(reason))
            files_bar.n = len(jobs)
        finally:  # before any message, interrupted or not: a bar closed later would redraw under it
            files_bar.close()
            tiles_bar.close()
    except KeyboardInterrupt:  # Ctrl+C or SIGTERM: the files that failed so far, then main's one line
        print_failures(failures)
        raise
    for reason in sorted(fallbacks):
        print(f"note: {reason}", file=sys.stderr)
    print(f"restored {len(report.restored)}, skipped {len(report.skipped)}, failed {len(report.failed)} "
          f"in {report.seconds:.1f}s", file=sys.stderr)
    print_failures(failures)
    return EXIT_SOME_FAILED if report.failed else EXIT_OK


def print_failures(reasons: list[str]) -> None:
    for reason in reasons:
        print(f"failed: {reason}", file=sys.stderr)


def parse_setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key.strip().replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.strip().replace("-", "_"), value


@contextmanager
def training_log() -> Iterator[None]:
    """Training logs (edpn.train, edpn.data, edpn.campaign) go to stderr as plain lines for the command's duration;
    under torchrun, ranks other than 0 print warnings only."""
    import logging
    import os

    log = logging.getLogger("edpn")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)
    try:
        yield
    finally:
        log.removeHandler(handler)


def cmd_train(args: argparse.Namespace) -> int:
    from .training import StopRequest, TrainConfig, Trainer, TrainingDiverged

    with training_log():
        requested = TrainConfig.read_settings(args.config) if args.config else {}
        settings = {f.name for f in dataclasses.fields(TrainConfig)}  # the options named after a setting
        requested.update({k: v for k, v in vars(args).items() if k in settings and v is not None})
        requested.update(dict(map(parse_setting, args.set)))
        if args.export is not None and args.export.is_dir():  # found now, not after hours of training
            raise ValueError(f"{args.export}: --export must name a file, and this is a folder")
        if args.resume is not None:
            checkpoint = Path(args.resume) if args.resume else Path(requested.get("out_dir", TrainConfig.out_dir),
                                                                     "checkpoint.pth")
            trainer = Trainer.from_checkpoint(checkpoint, requested, new_schedule=args.new_schedule)
        else:
            if args.new_schedule:
                print("edpn train: --new-schedule goes with --resume", file=sys.stderr)
                return EXIT_USAGE
            cfg = TrainConfig().updated(**requested)
            if not cfg.data:
                print("edpn train: no training data (--data or data = in the config)", file=sys.stderr)
                return EXIT_USAGE
            trainer = Trainer(cfg)
        target = trainer.cfg.iterations if args.until is None else min(args.until, trainer.cfg.iterations)
        if trainer.iteration >= target:
            finished = (f"the run in {trainer.out_dir} is at iteration {trainer.iteration} of {trainer.cfg.iterations}"
                        f"{'' if args.until is None else f' (--until {args.until})'}: nothing to train (more "
                        "iterations: --resume --new-schedule --iterations N)")
            if not args.export:
                raise ValueError(finished)
            print(f"edpn train: {finished}", file=sys.stderr)
        stop = StopRequest()
        try:
            with stop.installed():
                trainer.fit(until=args.until, show_progress=not args.no_progress, time_limit_s=args.time_limit,
                            stop=stop.requested)
        except TrainingDiverged as exc:
            print(f"edpn train: {exc}", file=sys.stderr)
            return EXIT_SOME_FAILED
        if stop.signalled is not None:
            print(f"edpn train: stopped at iteration {trainer.iteration}, checkpoint in {trainer.out_dir} (--resume "
                  f"continues){'; nothing exported' if args.export else ''}", file=sys.stderr)
            return EXIT_TERMINATED if stop.signalled == signal.SIGTERM else EXIT_INTERRUPTED
        if args.export and trainer.rank == 0:
            print(f"exported {trainer.export(args.export, weights=args.export_weights)}", file=sys.stderr)
        return EXIT_OK


def cmd_campaign(args: argparse.Namespace) -> int:
    from .training import campaign as campaigns

    campaign = campaigns.Campaign(args.root, args.runs)
    tasks = [args.task] if args.campaign_command == "chunk" else getattr(args, "tasks", None) or campaign.tasks()
    for task in tasks:
        campaign.config(task)  # a broken recipe is said before anything runs
    with training_log():
        if args.campaign_command == "run":
            campaigns.fetch_missing_photos(campaign, tasks)
            return campaigns.run_campaign(campaign, args.minutes, tasks)
        if args.campaign_command == "chunk":
            line = campaigns.run_chunk(campaign, args.task, args.minutes)
            print(campaigns.format_log([line] if line else []), file=sys.stderr)
            return EXIT_OK
        if args.campaign_command == "save":
            lines = [campaigns.save_state(campaign, task) for task in tasks]
            print(campaigns.format_log([line for line in lines if line]) or "nothing new to save", file=sys.stderr)
            return EXIT_OK
        if args.campaign_command == "compare":
            if args.iterations < 1:
                raise ValueError("--iterations must be at least 1")
            arms = {spec: campaigns.parse_arm(spec) for spec in args.arm}
            samples = args.iterations * campaign.config(args.task).batch_size
            comparison = campaigns.compare_recipes(campaign, args.task, arms, samples)
            if args.json:
                args.json.write_text(json.dumps(comparison, indent=1) + "\n")
            print(campaigns.format_comparison(comparison))
            return EXIT_OK
        if args.campaign_command == "adopt":
            line = campaigns.adopt_arm(campaign, args.task, args.checkpoint, args.note)
            print(campaigns.format_log([line] if line else []), file=sys.stderr)
            return EXIT_OK
        if args.campaign_command == "ship":
            from .resources import shipped_weights

            preset = campaign.config(args.task).preset
            shipped = shipped_weights(args.task).get(preset)
            if shipped is None:
                raise ValueError(f"no shipped {preset} weights for {args.task} to compare with")
            reasons = campaigns.ship(campaign, args.task, args.photos, shipped, args.json, crop=args.crop,
                                     iteration=args.iteration)
            print(f"not shipped: {'; '.join(reasons)}" if reasons else f"shipped: {shipped} replaced", file=sys.stderr)
            return EXIT_SOME_FAILED if reasons else EXIT_OK
        logged = campaign.log_lines()
        if args.groups:
            bars = {task: campaigns.kept_shipped_gains(campaign, task) for task in campaign.tasks()}
            print(campaigns.format_group_curve(logged, bars) or "no validation per group logged yet (val_crops = grid)")
        else:
            print(campaigns.format_curve(logged) if args.curve else campaigns.format_log(logged))
        return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import FAMILY_BLURS, eval_items, evaluate, format_photo_table, format_table, published_peers
    from .inference.engine import Restorer

    restorer = Restorer(args.weights, device=args.device, task=args.task)
    task = restorer.task
    others = {f"{path.name}": Restorer(path, device=args.device, task=task) for path in args.against}
    items = eval_items(args.data, task, lq_dir=args.lq, crop=args.crop, crops_per_photo=args.crops_per_photo,
                       families=tuple(args.families or FAMILY_BLURS), input_formats=args.formats, max_crops=args.items)
    report = evaluate(restorer, items, tile=args.tile, ensemble=args.ensemble, others=others,
                      peers=published_peers(task),
                      on_item=lambda name, i, n: print(f"\r{name}: {i}/{n}", end="", file=sys.stderr))
    print(file=sys.stderr)
    print(f"{len(items)} degraded crop(s), task {task}; outputs rounded to 8 bits; PSNR/SSIM on Y with a border "
          f"crop of the scale, LPIPS (AlexNet)")
    print(format_table(report))
    if args.by_photo:
        for over in (None, *others):
            print()
            print(format_photo_table(report, over))
    if args.json:
        args.json.write_text(json.dumps(report.as_dict(), indent=2))
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BEFORE_FAST_PATH, RestorePath, run_bench, write_json

    chosen = RestorePath("chosen", dcn=args.dcn, precision=args.precision, tile_policy=args.tile_policy)
    paths = (BEFORE_FAST_PATH, chosen) if args.compare else (chosen,)
    result = run_bench(quick=args.quick, presets=args.presets, tasks=args.tasks, devices=args.device,
                       photo_megapixels=args.photo_mp, paths=paths, tile_sweep=args.tile_sweep)
    print(f"wrote {write_json(result, args.json)}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from .config import TASKS
    from .inference.device import available_devices, describe_device, select_device
    from .inference.imageio import ImageError
    from .inference.precision import describe_precision
    from .model_io import WeightsError
    from .resources import shipped_weights, weights_dir

    if not args.paths:
        device = select_device("auto")
        print(f"torch {torch.__version__}; automatic device: {describe_device(device)}, "
              f"{describe_precision(device)}")
        for name, label in available_devices():
            print(f"  {name:7} {label}")
        print(f"shipped weights in {weights_dir()}:")
        for task in TASKS:
            for preset, path in shipped_weights(task).items():
                print(f"  {task:7} {preset:5} {path.name}")
        return EXIT_OK
    status = EXIT_OK
    for path in args.paths:
        try:
            print(describe_weights(path) if path.suffix in WEIGHTS_SUFFIXES else describe_image(path))
        except (WeightsError, ImageError) as exc:
            print(exc, file=sys.stderr)
            status = EXIT_SOME_FAILED
    return status


def describe_weights(path: Path) -> str:
    """What a weights file says of itself, once it has been checked as restore would check it."""
    from .model_io import validate_weights

    info = validate_weights(path)[0]
    lines = [f"{path}: preset {info.preset}, task {info.task}, scale x{info.scale}"]
    lines += [f"  {key}: {info.metadata[key]}" for key in ("parameters", "iterations", "initialised_from",
                                                           "iterations_before", "training_data", "date", "metrics")
              if key in info.metadata]
    return "\n".join(lines)


def describe_image(path: Path) -> str:
    from .inference.imageio import load_image
    from .inference.imageio.text import COMMENT

    img = load_image(path)
    quality = f", estimated JPEG quality {img.jpeg_quality}" if img.jpeg_quality else ""
    resolution = f", {img.dpi_label}" if img.dpi_label else ""
    metadata = (("ICC profile", img.icc_profile), ("EXIF", img.exif), ("XMP", img.xmp),
                ("IPTC (in JPEG and TIFF outputs)", img.iptc))
    carried = [name for name, data in metadata if data]
    if img.text:
        where = f"PNG outputs, the {COMMENT} in JPEG ones too" if COMMENT in img.text else "PNG outputs only"
        carried.append(f"text ({', '.join(img.text)}; kept in {where})")
    return (f"{path}: {img.format} {img.width}x{img.height}, {img.bit_depth}-bit, mode {img.mode}"
            f"{', alpha' if img.alpha is not None else ''}{resolution}{quality}; metadata restores keep: "
            f"{', '.join(carried) or 'none'}")


def cmd_data(args: argparse.Namespace) -> int:
    from .training.photos import arrange_split, fetch_photos, pack_photos

    fetch_photos(args.dest)
    split = arrange_split(args.dest, args.val_fraction)
    print(f"{len(split.train)} training photos in {args.dest / 'train'}; never used for training: "
          f"{len(split.select)} in {args.dest / 'select'} to pick checkpoints (--val-data), "
          f"{len(split.report)} in {args.dest / 'report'} for the reported figures; {len(split.set_aside)} not "
          f"sharp, set aside in {args.dest / 'set_aside'}")
    for held_out in ("select", "report"):
        entries = json.loads((args.dest / held_out / "manifest.json").read_text())
        kinds = Counter(entry.get("content", "untagged") for entry in entries)
        print(f"{held_out} shows: {', '.join(f'{kind} {count}' for kind, count in sorted(kinds.items()))}")
    if args.pack:
        crops = pack_photos(args.dest / "train", args.pack, max_mib=args.max_mib)
        print(f"{len(crops)} training crops packed in {args.pack}")
    return EXIT_OK


def check_device_name(name: str) -> None:
    """A device torch cannot parse ("banana") or that computes nothing ("meta") is a usage error, said before
    any file is read."""
    from .inference.device import parse_device

    if name != "auto":
        parse_device(name)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl+C (temp files removed, one line said) instead of killing the process silently."""
    def raise_terminated(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread (an embedding application): leave its handling alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_traceback(exc: BaseException) -> Path:
    """The full traceback of an unexpected error, in a file a bug report can attach."""
    with tempfile.NamedTemporaryFile("w", prefix="edpn-traceback-", suffix=".txt", delete=False) as f:
        traceback.print_exception(exc, file=f)
    return Path(f.name)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


COMMANDS = {"restore": cmd_restore, "train": cmd_train, "campaign": cmd_campaign, "eval": cmd_eval,
            "bench": cmd_bench, "info": cmd_info, "data": cmd_data}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .inference.imageio import ImageError
    from .model_io import WeightsError

    name = f"edpn {args.command}"
    # Pillow warns about damaged metadata it skips; the image then either loads or fails with its own one line.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    with sigterm_as_interrupt():
        try:
            if isinstance(getattr(args, "device", None), str):
                check_device_name(args.device)
            code = COMMANDS[args.command](args)
            sys.stdout.flush()  # here, where a closed pipe is caught, rather than at exit
            return code
        except (WeightsError, ImageError, ValueError, FileNotFoundError) as exc:
            print(f"{name}: {one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        except Terminated:
            print(f"{name}: terminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        except KeyboardInterrupt:
            print(f"{name}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except MemoryError as exc:
            print(f"{name}: out of memory ({one_line(exc)})", file=sys.stderr)
            return EXIT_SOME_FAILED
        except BrokenPipeError:  # the reader stopped early (`edpn campaign log | head`): nothing went wrong here
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exit's flush cannot fail again
            return EXIT_BROKEN_PIPE
        except Exception as exc:  # noqa: BLE001 - a bug: one line for the user, the traceback kept for a report
            print(f"{name}: unexpected error ({type(exc).__name__}: {one_line(exc)[:200]}); full traceback in "
                  f"{write_traceback(exc)}", file=sys.stderr)
            return EXIT_UNEXPECTED


def run() -> NoReturn:
    """The `edpn` program: main with freed tensor memory kept for reuse (edpn_core.heap). Freezing the
    objects before exit keeps the interpreter's last garbage collection off torch's import-time objects:
    0.6 s of every command on a 2-core machine (docs/BENCHMARKS.md)."""
    from .heap import keep_freed_memory

    keep_freed_memory()
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
