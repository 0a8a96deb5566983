"""EXIF orientation read and reset, and the pixel size updated, in place (maker notes and offsets survive), and
pixels turned upright."""
from __future__ import annotations

import struct

import numpy as np
from PIL import Image

EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION_TAG = 0x0112
EXIF_IFD_POINTER = 0x8769
PIXEL_SIZE_TAGS = (0xA002, 0xA003)  # PixelXDimension, PixelYDimension, in the Exif IFD
RESOLUTION_TAGS = (0x011A, 0x011B)  # XResolution, YResolution, in IFD0 (a TIFF's own resolution too)
MAKER_NOTE_TAG = 0x927C  # in the Exif IFD: the camera maker's private block, often most of the EXIF
_SHORT, _LONG, _RATIONAL = 3, 4, 5
# IFD0 tags that belong in EXIF. A TIFF's IFD0 also holds its layout (strips, bits, compression) and sometimes
# megabytes of private data; only these are carried from a TIFF into other files and from EXIF into TIFFs.
EXIF_IFD0_TAGS = frozenset({0x010E, 0x010F, 0x0110, ORIENTATION_TAG, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132,
                            0x013B, 0x8298, EXIF_IFD_POINTER, 0x8825})
EXIF_SUB_IFDS = (EXIF_IFD_POINTER, 0x8825)  # Exif and GPS: serialised as nested IFDs


def _byte_order(tiff: bytes) -> str:
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or struct.unpack_from(order + "H", tiff, 2)[0] != 42:
        raise ValueError("not a TIFF/EXIF structure")
    return order


def _entry(tiff: bytes, order: str, ifd: int, tag: int) -> tuple[int, int] | None:
    """(type, offset of the value) of `tag`'s entry in the IFD at offset `ifd`; None when absent."""
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        found, kind = struct.unpack_from(order + "HH", tiff, entry)
        if found == tag:
            return kind, entry + 8
    return None


def _orientation_entry(tiff: bytes) -> tuple[str, int] | None:
    """Byte order and offset of the value of IFD0's Orientation in a TIFF/EXIF stream; None when absent."""
    try:
        order = _byte_order(tiff)
        entry = _entry(tiff, order, struct.unpack_from(order + "I", tiff, 4)[0], ORIENTATION_TAG)
    except struct.error as exc:
        raise ValueError(f"truncated EXIF ({exc})") from exc
    if entry is None:
        return None
    if entry[0] != _SHORT:  # as the standard says
        raise ValueError("Orientation is not a SHORT")
    return order, entry[1]


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
    return EXIF_HEADER + tiff_with_orientation_reset(_split(exif_bytes)[1])


def _split(exif_bytes: bytes) -> tuple[bytes, bytes]:
    """The "Exif\\0\\0" header (or nothing) and the TIFF structure after it."""
    header = EXIF_HEADER if exif_bytes.startswith(EXIF_HEADER) else b""
    return header, exif_bytes[len(header):]


def exif_with_pixel_size(exif_bytes: bytes, width: int, height: int) -> bytes:
    """EXIF whose PixelXDimension and PixelYDimension give the saved size, not the input's (an x4 result, an
    upright photo), patched in place as the orientation is. A size its fields cannot hold, or an Exif IFD that
    cannot be followed, leaves the EXIF as it was: a stale size never costs the photo its other metadata."""
    header, tiff = _split(exif_bytes)
    try:
        order = _byte_order(tiff)
        pointer = _entry(tiff, order, struct.unpack_from(order + "I", tiff, 4)[0], EXIF_IFD_POINTER)
        if pointer is None:
            return exif_bytes
        exif_ifd = struct.unpack_from(order + "I", tiff, pointer[1])[0]
        found = [(entry, value) for tag, value in zip(PIXEL_SIZE_TAGS, (width, height))
                 if (entry := _entry(tiff, order, exif_ifd, tag)) is not None]
    except (ValueError, struct.error):
        return exif_bytes
    if not all(kind == _LONG or (kind == _SHORT and value <= 0xFFFF) for (kind, _), value in found):
        return exif_bytes
    patched = bytearray(tiff)
    for (kind, offset), value in found:
        struct.pack_into(order + ("I" if kind == _LONG else "H"), patched, offset, value)
    return header + bytes(patched)


def exif_with_resolution_scaled(exif_bytes: bytes, factor: int) -> bytes:
    """EXIF whose XResolution and YResolution (pixels per inch or cm) are `factor` times the input's, so an x4
    result prints at the size the photo did; patched in place. EXIF that cannot be followed, or a resolution
    that would overflow, is left as it was."""
    if factor == 1:
        return exif_bytes
    header, tiff = _split(exif_bytes)
    try:
        order = _byte_order(tiff)
        ifd0 = struct.unpack_from(order + "I", tiff, 4)[0]
        found = [entry for tag in RESOLUTION_TAGS if (entry := _entry(tiff, order, ifd0, tag)) is not None]
        pointers = [struct.unpack_from(order + "I", tiff, at)[0] for kind, at in found if kind == _RATIONAL]
        numerators = [struct.unpack_from(order + "II", tiff, pointer)[0] for pointer in pointers]
    except (ValueError, struct.error):
        return exif_bytes
    if len(pointers) != len(found) or any(numerator * factor > 0xFFFFFFFF for numerator in numerators):
        return exif_bytes
    patched = bytearray(tiff)
    for pointer, numerator in zip(pointers, numerators):
        struct.pack_into(order + "I", patched, pointer, numerator * factor)
    return header + bytes(patched)


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


def exif_within(exif_bytes: bytes, room: int) -> bytes | None:
    """EXIF that fits `room` bytes (a JPEG's one APP1 segment): as it is; else re-serialised without the camera's
    maker note (and the thumbnail, which Pillow does not write back), keeping date, camera, lens, exposure and
    GPS; else None. A TIFF or PNG from a raw converter can carry more EXIF than a JPEG holds."""
    if len(exif_bytes) <= room:
        return exif_bytes
    tags = Image.Exif()
    try:
        tags.load(exif_bytes)
        tags.get_ifd(EXIF_IFD_POINTER).pop(MAKER_NOTE_TAG, None)
        slimmer = tags.tobytes() if tags else b""  # with its "Exif\0\0" header
    except Exception:  # noqa: BLE001 - Pillow raises many types for EXIF it cannot follow; none is worth the save
        return None
    return slimmer if 0 < len(slimmer) <= room else None
