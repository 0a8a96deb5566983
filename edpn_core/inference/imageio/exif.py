"""EXIF orientation read and reset in place (maker notes and offsets survive), and pixels turned upright."""
from __future__ import annotations

import struct

import numpy as np
from PIL import Image

EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION_TAG = 0x0112
# IFD0 tags that belong in EXIF. A TIFF's IFD0 also holds its layout (strips, bits, compression) and sometimes
# megabytes of private data; only these are carried from a TIFF into other files and from EXIF into TIFFs.
EXIF_IFD0_TAGS = frozenset({0x010E, 0x010F, 0x0110, ORIENTATION_TAG, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132,
                            0x013B, 0x8298, 0x8769, 0x8825})
EXIF_SUB_IFDS = (0x8769, 0x8825)  # Exif and GPS: serialised as nested IFDs


def _orientation_entry(tiff: bytes) -> tuple[str, int] | None:
    """Byte order and offset of the value of IFD0's Orientation in a TIFF/EXIF stream; None when absent."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    try:
        if order is None or struct.unpack_from(order + "H", tiff, 2)[0] != 42:
            raise ValueError("not a TIFF/EXIF structure")
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            tag, kind = struct.unpack_from(order + "HH", tiff, entry)
            if tag == ORIENTATION_TAG:
                if kind != 3:  # SHORT, as the standard says
                    raise ValueError("Orientation is not a SHORT")
                return order, entry + 8
    except struct.error as exc:
        raise ValueError(f"truncated EXIF ({exc})") from exc
    return None


def read_orientation(tiff: bytes) -> int:
    entry = _orientation_entry(tiff)
    value = struct.unpack_from(entry[0] + "H", tiff, entry[1])[0] if entry else 1
    return value if 1 <= value <= 8 else 1


def tiff_with_orientation_reset(tiff: bytes) -> bytes:
    entry = _orientation_entry(tiff)
    if entry is None:
        return tiff
    patched = bytearray(tiff)
    struct.pack_into(entry[0] + "H", patched, entry[1], 1)
    return bytes(patched)


def exif_with_orientation_reset(exif_bytes: bytes) -> bytes:
    """EXIF for pixels that are already upright: Orientation set to 1, "Exif\\0\\0" header added if missing.

    The value is patched in place rather than re-serialised, so maker notes and every offset survive.
    Raises ValueError for EXIF that cannot be parsed.
    """
    tiff = exif_bytes[len(EXIF_HEADER):] if exif_bytes.startswith(EXIF_HEADER) else exif_bytes
    return EXIF_HEADER + tiff_with_orientation_reset(tiff)


def file_exif(im: Image.Image) -> bytes | None:
    """The file's EXIF. For TIFF it is IFD0 itself, so only its EXIF tags are kept (not strips, bits...)."""
    if im.format != "TIFF":
        return im.info.get("exif") or None
    exif = im.getexif()
    for tag in [tag for tag in exif if tag not in EXIF_IFD0_TAGS]:
        del exif[tag]
    return exif.tobytes() if len(exif) else None


def apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright for EXIF orientation 1..8 (the same transforms as ImageOps.exif_transpose)."""
    if orientation in (5, 6, 7, 8):
        a = a.swapaxes(0, 1)
    flips = {2: (slice(None), slice(None, None, -1)), 3: (slice(None, None, -1), slice(None, None, -1)),
             4: (slice(None, None, -1),), 6: (slice(None), slice(None, None, -1)),
             7: (slice(None, None, -1), slice(None, None, -1)), 8: (slice(None, None, -1),)}
    return a[flips[orientation]] if orientation in flips else a
