"""Replacing a file so that a crash or power loss leaves the old file or the new one, never half of either."""
from __future__ import annotations

import os
from pathlib import Path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` itself durable (POSIX; Windows has no directory handles to flush)."""
    if os.name == "posix":
        _fsync(folder)


def replace_durably(temp: Path, path: Path, keep_previous: Path | None = None) -> None:
    """Flush `temp`, which a library wrote (safetensors, torch.save), to disk, then rename it over `path`.

    With `keep_previous` (in the same folder) the file at `path` is first renamed there. Every step is flushed
    before the next, so a crash at any instant leaves the old file or the new one under one of those names:
    readers fall back on the previous one (training.checkpoint.newest_checkpoint)."""
    _fsync(temp)
    if keep_previous is not None and path.exists():
        os.replace(path, keep_previous)
        fsync_folder(path.parent)
    os.replace(temp, path)
    fsync_folder(path.parent)
