"""JPEG streams inside Eet archives: Enlightenment keeps each background photo as a JPEG inside an .edj file."""
from __future__ import annotations

import io
import re

from PIL import Image

_MARKER_AFTER_ENTROPY = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")  # not stuffing (00), RST (D0-D7) or fill


def _jpeg_end(blob: bytes, start: int) -> int | None:
    """End offset of the JPEG stream whose SOI is at ``start``, walking its segments; None if malformed.

    Walking segment lengths (rather than taking the first FFD9) steps over EXIF thumbnails, whose own
    EOI would otherwise cut the photo short.
    """
    pos = start + 2
    n = len(blob)
    while pos + 4 <= n:
        if blob[pos] != 0xFF:
            return None
        code = blob[pos + 1]
        if code == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if code == 0xD9:
            return pos + 2
        if code == 0xD8 or code == 0x00:
            return None
        if code == 0x01 or 0xD0 <= code <= 0xD7:
            pos += 2
            continue
        length = (blob[pos + 2] << 8) | blob[pos + 3]
        if length < 2:
            return None
        pos += 2 + length
        if code == 0xDA:  # start of scan: entropy-coded data runs up to the next real marker
            match = _MARKER_AFTER_ENTROPY.search(blob, pos)
            if match is None:
                return None
            pos = match.start()
    return None


def jpeg_streams(blob: bytes) -> list[bytes]:
    """Every well-formed JPEG stream (SOI ... EOI) embedded in a byte blob, in order of appearance."""
    streams = []
    start = blob.find(b"\xff\xd8\xff")
    while start != -1:
        end = _jpeg_end(blob, start)
        if end is not None:
            streams.append(blob[start:end])
        start = blob.find(b"\xff\xd8\xff", start + 2)
    return streams


def largest_jpeg(blob: bytes) -> bytes | None:
    """The largest embedded JPEG that decodes: an .edj background keeps its photo as the biggest stream."""
    for stream in sorted(jpeg_streams(blob), key=len, reverse=True):
        try:
            with Image.open(io.BytesIO(stream)) as img:
                img.load()
            return stream
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return None
