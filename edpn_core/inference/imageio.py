"""Reading and writing photos without losing what users care about: ICC profile, EXIF, alpha and 16-bit.

Pixels travel as float32 in [0, 1] with EXIF orientation already applied; metadata travels next to them in a
`LoadedImage` so that `save_image` can put it back. Pillow does the decoding and encoding except where it
cannot hold the data: 16-bit colour (decoded by OpenCV, PNG encoded by OpenCV with our own metadata chunks) and
TIFF (written here, with Pillow's IFD serialiser, so that 8- and 16-bit TIFFs carry ICC and EXIF alike).
"""
from __future__ import annotations

import io
import os
import re
import secrets
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageOps, TiffImagePlugin, UnidentifiedImageError

from ..durable import fsync_folder

# Larger than any consumer camera's photo (100 MP), small enough that a hostile 18 KB PNG declaring 150 MP is
# refused rather than restored for hours. EDPN_MAX_MEGAPIXELS (or a caller's max_pixels) changes it.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_VARIABLE = "EDPN_MAX_MEGAPIXELS"
# A file may hold metadata and compressed pixels but not far more than its pixels uncompressed (8 bytes each at
# 16-bit RGBA) plus this: anything beyond is refused before it is read into memory.
_FILE_SLACK_BYTES = 64 << 20
# Temp files _write_atomic makes: ".NAME.PID-HEX.tmp" (older versions: ".NAME.HEX.tmp").
_TEMP_NAME = re.compile(r"^\..+\.(?:(\d+)-)?[0-9a-f]{8}\.tmp$")
_ORPHAN_AGE_S = 3600  # a temp whose writer cannot be identified is an orphan after this long

# Extension -> Pillow format name; every lower-cased format name is also a key, so `format="tiff"` works.
SUPPORTED_SAVE_FORMATS: dict[str, str] = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
}
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".tif", ".tiff", ".bmp"})

_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION = 0x0112
# IFD0 tags that belong in EXIF. A TIFF's IFD0 also holds its layout (strips, bits, compression) and sometimes
# megabytes of private data; only these are carried from a TIFF into other files and from EXIF into TIFFs.
_EXIF_IFD0_TAGS = frozenset({0x010E, 0x010F, 0x0110, _ORIENTATION, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132,
                             0x013B, 0x8298, 0x8769, 0x8825})
_EXIF_SUB_IFDS = (0x8769, 0x8825)  # Exif and GPS: serialised as nested IFDs
# Modes Pillow decodes faithfully, and what they become before reaching numpy.
_PILLOW_MODES = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "P": "RGB", "PA": "RGBA", "RGB": "RGB",
                 "RGBA": "RGBA", "RGBa": "RGBA", "RGBX": "RGB", "YCbCr": "RGB", "CMYK": "RGB",
                 "I;16": "I;16", "I;16L": "I;16", "I;16B": "I;16", "I;16N": "I;16"}
# Modes Pillow reports for 16-bit files it would truncate to 8 bits (or, for "I", widen): OpenCV reads those.
_OPENCV_16BIT_MODES = frozenset({"RGB", "RGBA", "RGBX", "LA", "I"})
# IJG (libjpeg) luminance quantisation table, natural order, as in Pillow's `quantization[0]`.
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)

_EXISTS = "already exists; refusing to overwrite it (overwrite=True replaces it)"
# The pixel limit is ours (checked from the header, refused as one line); Pillow's warning below its own
# error threshold would be a second, stray line on stderr for the same image.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_pillow_limit_lock = threading.Lock()
_read_lock = threading.Lock()
_read_paths: set[object] = set()  # identities of every file load_image has read: save_image never replaces them
_swept_folders: set[str] = set()  # output folders already cleared of temp files left by killed runs


class ImageError(Exception):
    """An image that cannot be read or written; str() is one line, "<file>: <reason>", for a dialog or a log."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(path, reason)  # both in args, so the error survives pickling (process pools)
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())

    def __str__(self) -> str:
        return " ".join(f"{self.path}: {self.reason}".splitlines())


@dataclass
class LoadedImage:
    """Upright pixels as float32 plus everything needed to write them back the way they came."""

    rgb: np.ndarray  # float32 H x W x 3 in [0, 1], grey replicated to 3 channels (restored for saving: may be uint8/16)
    alpha: np.ndarray | None  # float32 H x W in [0, 1]
    bit_depth: int  # 8 or 16
    grey: bool
    mode: str  # Pillow mode, or e.g. "RGB;16" when OpenCV decoded 16-bit colour
    format: str  # Pillow format name: "JPEG", "PNG", "TIFF", "WEBP", "BMP"...
    exif: bytes | None  # raw EXIF ("Exif\0\0" + TIFF structure) with Orientation reset to 1
    icc_profile: bytes | None
    jpeg_quality: int | None
    path: Path | None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


# --------------------------------------------------------------------------------------------------- EXIF


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
            if tag == _ORIENTATION:
                if kind != 3:  # SHORT, as the standard says
                    raise ValueError("Orientation is not a SHORT")
                return order, entry + 8
    except struct.error as exc:
        raise ValueError(f"truncated EXIF ({exc})") from exc
    return None


def _read_orientation(tiff: bytes) -> int:
    entry = _orientation_entry(tiff)
    value = struct.unpack_from(entry[0] + "H", tiff, entry[1])[0] if entry else 1
    return value if 1 <= value <= 8 else 1


def _tiff_with_orientation_reset(tiff: bytes) -> bytes:
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
    tiff = exif_bytes[len(_EXIF_HEADER):] if exif_bytes.startswith(_EXIF_HEADER) else exif_bytes
    return _EXIF_HEADER + _tiff_with_orientation_reset(tiff)


def _raw_exif(im: Image.Image) -> bytes | None:
    """The file's EXIF. For TIFF it is IFD0 itself, so only its EXIF tags are kept (not strips, bits...)."""
    if im.format != "TIFF":
        return im.info.get("exif") or None
    exif = im.getexif()
    for tag in [tag for tag in exif if tag not in _EXIF_IFD0_TAGS]:
        del exif[tag]
    return exif.tobytes() if len(exif) else None


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright for EXIF orientation 1..8 (the same transforms as ImageOps.exif_transpose)."""
    if orientation in (5, 6, 7, 8):
        a = a.swapaxes(0, 1)
    flips = {2: (slice(None), slice(None, None, -1)), 3: (slice(None, None, -1), slice(None, None, -1)),
             4: (slice(None, None, -1),), 6: (slice(None), slice(None, None, -1)),
             7: (slice(None, None, -1), slice(None, None, -1)), 8: (slice(None, None, -1),)}
    return a[flips[orientation]] if orientation in flips else a


# --------------------------------------------------------------------------------------------------- loading


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageError(path, "file not found")
    if path.is_dir():
        raise ImageError(path, "is a folder, not an image file")
    try:
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if empty:
        raise ImageError(path, "file is empty")


def _let_pillow_allow(max_pixels: int) -> None:
    """Raise (never lower) Pillow's process-wide decompression-bomb limit to `max_pixels`.

    `max_pixels` is the policy and is checked here from the header; Pillow's guard (a global, also checked
    while decoding TIFF) must not refuse, or warn about, images this module accepts. Raising it only, once,
    is free of the races a temporary change would have between threads.
    """
    with _pillow_limit_lock:
        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels


def _open_pillow(source: Path | BinaryIO, path: Path, max_pixels: int) -> Image.Image:
    """Parse the header only and refuse images over `max_pixels` before a single pixel is decoded."""
    try:
        im = Image.open(source)
    except UnidentifiedImageError as exc:
        raise ImageError(path, "not an image, or an image format that cannot be read") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"image has far more pixels than the {_limit_text(max_pixels)} "
                               "(possible decompression bomb)") from exc
    except Exception as exc:
        raise ImageError(path, f"cannot read image header ({exc})") from exc
    try:
        _check_pixels(path, *im.size, max_pixels)
    except ImageError:
        im.close()
        raise
    return im


def _check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(path, f"image is {width} x {height} ({width * height / 1e6:.1f} MP), over the "
                               f"{_limit_text(max_pixels)}")


def _check_file_size(path: Path, size: int, pixels: int, image: str) -> None:
    if size > 8 * pixels + _FILE_SLACK_BYTES:
        raise ImageError(path, f"file is {size / 2**20:.0f} MiB, far more than {image} can hold "
                               "(junk in or after the image?)")


def _declared_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from the first 32 bytes of a PNG or WebP, the formats whose header Pillow cannot parse
    without reading far (every PNG chunk before the pixels, or the whole WebP file)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    if head[12:16] == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if head[12:16] == b"VP8 ":
        return struct.unpack("<H", head[26:28])[0] & 0x3FFF, struct.unpack("<H", head[28:30])[0] & 0x3FFF
    if head[12:16] == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def _limit_text(max_pixels: int) -> str:
    return f"{max_pixels / 1e6:g} MP limit (raise it with {MAX_PIXELS_VARIABLE} or --max-megapixels)"


def pixel_limit(megapixels: float | None = None) -> int:
    """The pixel limit for reads: `megapixels` when given, else the EDPN_MAX_MEGAPIXELS variable, else 100 MP."""
    if megapixels is None:
        text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        try:
            megapixels = float(text)
        except ValueError:
            raise ValueError(f"{MAX_PIXELS_VARIABLE}={text}: not a number of megapixels") from None
    if not megapixels > 0:
        raise ValueError(f"the pixel limit must be more than 0 megapixels, got {megapixels:g}")
    return int(megapixels * 1e6)


def _read_checked(path: Path, limit: int) -> bytes:
    """The file's bytes, read only once its header says it is an image within `limit` and of a plausible size:
    a file larger than its declared pixels can need (or, before its size is known, than the limit allows)
    is refused unread."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            declared = _declared_size(f.read(32))
            if declared is None:
                _check_file_size(path, size, limit, f"an image within the {limit / 1e6:g} MP limit")
            else:
                _check_pixels(path, *declared, limit)
                _check_file_size(path, size, declared[0] * declared[1], "a {} x {} image".format(*declared))
            f.seek(0)
            with _open_pillow(f, path, limit) as probe:
                _check_file_size(path, size, probe.width * probe.height, f"a {probe.width} x {probe.height} image")
            f.seek(0)
            return f.read()
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or exc})") from exc


def _header_depth_and_grey(im: Image.Image, data: bytes) -> tuple[int, bool]:
    """Bits per sample and greyness as stored, which Pillow's mode hides for 16-bit colour and grey+alpha."""
    if im.format == "PNG" and data[12:16] == b"IHDR":
        return data[24], data[25] in (0, 4)
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, 8)
        return max(bits) if isinstance(bits, tuple) else bits, im.tag_v2.get(262) in (0, 1)
    return (16 if im.mode.startswith("I;16") else 8), im.mode in ("1", "L", "LA", "La")


def _decode_opencv(im: Image.Image, data: bytes, grey: bool, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """16-bit colour or grey+alpha, which Pillow would truncate. Returns (colour, alpha) as stored, unrotated."""
    if im.format == "TIFF":
        # OpenCV 5 applies a TIFF's orientation even with IMREAD_UNCHANGED; hide it so it is applied once.
        try:
            data = _tiff_with_orientation_reset(data)
        except ValueError:
            pass  # BigTIFF or odd Orientation: the size check below still catches a rotated result
    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    # Recent Pillow reports a TIFF's size already turned by its orientation; compare with the stored size.
    stored = (im.tag_v2.get(257), im.tag_v2.get(256)) if im.format == "TIFF" else (im.height, im.width)
    if a is None or a.shape[:2] != stored or a.dtype != np.uint16:
        raise ImageError(path, "truncated or corrupt 16-bit image data")
    channels = 1 if a.ndim == 2 else a.shape[2]
    alpha = a[..., -1] if channels in (2, 4) else None
    if grey or channels <= 2:
        return (a if a.ndim == 2 else a[..., 0]), alpha
    return a[..., 2::-1], alpha  # BGR(A) -> RGB


@lru_cache(maxsize=1)
def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Through the embedded CMYK profile to sRGB when there is one (then tagged sRGB), else Pillow's formula."""
    if icc:
        try:
            source, srgb = ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(im, source, srgb, outputMode="RGB"), _srgb_icc()
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken or non-CMYK profile: the plain conversion below is still a usable picture
    return im.convert("RGB"), None


def _decode_pillow(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """(colour, alpha, icc_profile) upright from a loaded image in a _PILLOW_MODES mode; colour is 2-D for grey."""
    mode, icc = im.mode, im.info.get("icc_profile") or None
    try:
        ImageOps.exif_transpose(im, in_place=True)  # Pillow knows whether it turned the pixels already (TIFF)
    except Exception:
        pass  # EXIF too damaged to say: the pixels stay as stored, and load_image drops that EXIF
    if mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc)
    elif "transparency" in im.info and mode in ("1", "L", "P", "RGB"):
        im = im.convert("LA" if mode in ("1", "L") else "RGBA")
    elif im.mode != _PILLOW_MODES[mode] and _PILLOW_MODES[mode] != "I;16":
        im = im.convert(_PILLOW_MODES[mode])
    a = np.asarray(im)
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:
        a = a.astype(np.uint16, copy=False)  # I;16B arrives big-endian
    if im.mode in ("LA", "RGBA"):
        return (a[..., 0] if im.mode == "LA" else a[..., :3]), a[..., 3 if im.mode == "RGBA" else 1], icc
    return a, None, icc


def _to_unit_float(a: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(a, dtype=np.float32)
    out /= np.iinfo(a.dtype).max
    return out


def _remember_input(path: Path) -> None:
    with _read_lock:
        _read_paths.update(_identities(path))


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> LoadedImage:
    """Read any 8/16-bit PNG, TIFF, JPEG, WebP or BMP as upright float32 RGB, keeping alpha, ICC and EXIF.

    Every failure (missing, empty, not an image, truncated, too many pixels, unsupported mode) is an ImageError
    with a one-line message; the header (format, size against `max_pixels`, default `pixel_limit()`) is checked
    before the rest of the file is read or anything decoded.
    """
    path = Path(path)
    limit = max_pixels if max_pixels is not None else pixel_limit()
    _check_file(path)
    _let_pillow_allow(limit)
    data = _read_checked(path, limit)  # then bytes: no handle kept open, OpenCV gets bytes (non-ASCII paths work)
    with _open_pillow(io.BytesIO(data), path, limit) as im:
        try:
            bits, header_grey = _header_depth_and_grey(im, data)
            by_opencv = bits == 16 and im.mode in _OPENCV_16BIT_MODES
            if by_opencv:
                colour, alpha = _decode_opencv(im, data, header_grey, path)
                icc = im.info.get("icc_profile") or None
                mode = ("L" if colour.ndim == 2 else "RGB") + ("A" if alpha is not None else "") + ";16"
                raw_exif = _raw_exif(im)
            elif im.mode in _PILLOW_MODES:
                mode = im.mode
                im.load()
                raw_exif = _raw_exif(im)  # before exif_transpose, which re-serialises it (losing maker notes)
                colour, alpha, icc = _decode_pillow(im)
            else:
                raise ImageError(path, f"unsupported colour mode {im.mode}")
            quality = estimate_jpeg_quality(im)
        except ImageError:
            raise
        except Exception as exc:  # Pillow/OpenCV raise many types for damaged data; none may escape raw
            raise ImageError(path, f"truncated or corrupt image data ({exc})") from exc
        file_format = "JPEG" if im.format == "MPO" else (im.format or "unknown")
    try:
        tiff = raw_exif[len(_EXIF_HEADER):] if raw_exif and raw_exif.startswith(_EXIF_HEADER) else raw_exif
        orientation = _read_orientation(tiff) if tiff else 1
        exif = exif_with_orientation_reset(tiff) if tiff else None
    except ValueError:
        orientation, exif = 1, None  # unreadable EXIF is dropped rather than making the photo unreadable
    if by_opencv:  # Pillow has turned its pixels already
        colour = _apply_orientation(colour, orientation)
        alpha = None if alpha is None else _apply_orientation(alpha, orientation)
    rgb = _to_unit_float(colour)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    _remember_input(path)
    return LoadedImage(
        rgb=rgb, alpha=None if alpha is None else _to_unit_float(alpha),
        bit_depth=16 if colour.dtype == np.uint16 else 8, grey=colour.ndim == 2, mode=mode, format=file_format,
        exif=exif, icc_profile=icc, jpeg_quality=quality, path=path)


def estimate_jpeg_quality(path_or_pil_image: str | os.PathLike | Image.Image) -> int | None:
    """The IJG quality (1..100) whose luminance table is closest to the file's; None for non-JPEG images.

    Lets a restored JPEG be written back at the quality it arrived with. Tables from encoders that do not
    scale the IJG table (some cameras, Photoshop) give the nearest IJG equivalent.
    """
    if isinstance(path_or_pil_image, Image.Image):
        tables = getattr(path_or_pil_image, "quantization", None)
        if not tables or 0 not in tables or len(tables[0]) != 64:
            return None
        return int(np.argmin(np.abs(_ijg_tables() - np.asarray(tables[0], dtype=np.int64)).sum(axis=1))) + 1
    path = Path(path_or_pil_image)
    _check_file(path)
    _let_pillow_allow(DEFAULT_MAX_PIXELS)
    with _open_pillow(path, path, DEFAULT_MAX_PIXELS) as im:
        return estimate_jpeg_quality(im)


@lru_cache(maxsize=1)
def _ijg_tables() -> np.ndarray:
    """Row q-1: the luminance table libjpeg writes at quality q (integer arithmetic, baseline clamp)."""
    q = np.arange(1, 101, dtype=np.int64)[:, None]
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    return np.clip((_IJG_LUMINANCE * scale + 50) // 100, 1, 255)


# --------------------------------------------------------------------------------------------------- saving


def _identities(path: Path) -> set[object]:
    """Ways to recognise a file: its resolved, case-normalised path, and (device, inode) when it exists."""
    ids: set[object] = {os.path.normcase(str(path.resolve()))}
    try:
        st = os.stat(path)
        ids.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    return ids


def _check_destination(path: Path, overwrite: bool, protect: Iterable[str | os.PathLike]) -> None:
    if path.is_dir():
        raise ImageError(path, "is a folder; give a file name to save to")
    target = _identities(path)
    protected = set().union(*(_identities(Path(p)) for p in protect))
    with _read_lock:
        read_before = not target.isdisjoint(_read_paths)
    if not target.isdisjoint(protected) or read_before:
        raise ImageError(path, "refusing to write over an input image; choose another output name or folder")
    if path.exists() and not overwrite:
        raise ImageError(path, _EXISTS)


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601


def code_values(x: np.ndarray, bits: int) -> np.ndarray:
    """Unit floats, or 8/16-bit code values, as `bits`-bit code values: clipped and rounded to the nearest
    (truncation would darken every image by half a step). The caller checks floats are finite."""
    dtype, top = (np.uint8, 255) if bits == 8 else (np.uint16, 65535)
    if x.dtype.kind == "u":
        if x.dtype == dtype:
            return x
        scaled = x.astype(np.float32) * np.float32(top / np.iinfo(x.dtype).max)
        return np.rint(scaled, out=scaled).astype(dtype)
    q = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False) * np.float32(top)
    return np.rint(q, out=q).astype(dtype)


def stored_bit_depth(fmt: str, bit_depth: int) -> int:
    """Bits per sample a format keeps: PNG and TIFF keep 16, JPEG and WebP hold 8."""
    return bit_depth if SUPPORTED_SAVE_FORMATS.get("." + fmt.lower().lstrip(".")) in ("PNG", "TIFF") else 8


def _quantise(x: np.ndarray, bits: int, path: Path) -> np.ndarray:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ImageError(path, "pixel data contains NaN or infinity")
    return code_values(x, bits)


def _luma(rgb: np.ndarray) -> np.ndarray:
    luma = np.asarray(rgb, np.float32) @ _LUMA
    if rgb.dtype.kind == "u":
        luma /= np.iinfo(rgb.dtype).max
    return luma


def _icc_matches(icc: bytes, channels: int) -> bool:
    """An ICC profile describes grey or RGB data; a mismatched one would be ignored or misused by readers."""
    return icc[16:20] == (b"GRAY" if channels <= 2 else b"RGB ")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _encode_png16(a: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    """16-bit PNG via OpenCV (Pillow cannot write 16-bit colour), then iCCP/eXIf chunks inserted after IHDR."""
    if a.ndim == 3:
        a = a[..., [2, 1, 0, 3][:a.shape[2]]]  # RGB(A) -> BGR(A)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(a))
    if not ok:
        raise ValueError("OpenCV could not encode the PNG")
    png = encoded.tobytes()
    if png[12:16] != b"IHDR":
        raise ValueError("OpenCV wrote a PNG that does not start with IHDR")
    chunks = b""
    if icc:
        chunks += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        chunks += _png_chunk(b"eXIf", exif[len(_EXIF_HEADER):])
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, length, "IHDR", 13 bytes of data, CRC
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def _encode_tiff(a: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    """Little-endian TIFF, Deflate with horizontal predictor, 8 or 16 bits, grey/grey+alpha/RGB/RGBA.

    Written here rather than by Pillow or OpenCV because neither writes 16-bit colour with ICC and EXIF.
    Pillow's IFD serialiser lays out the tags (its StripOffsets are relative to the end of the IFD).
    """
    height, width = a.shape[:2]
    channels = 1 if a.ndim == 2 else a.shape[2]
    a = a.reshape(height, width, channels)
    deltas = a.copy()
    deltas[:, 1:] -= a[:, :-1]  # predictor 2; unsigned arithmetic wraps exactly as readers expect
    deltas = deltas.astype(deltas.dtype.newbyteorder("<"), copy=False)
    rows = max(1, (1 << 18) // (width * channels * a.itemsize))
    strips = [zlib.compress(deltas[y:y + rows].tobytes(), 6) for y in range(0, height, rows)]
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    if exif:
        tags = Image.Exif()
        tags.load(exif)
        for tag, value in tags.items():
            if tag in _EXIF_SUB_IFDS:
                value = tags.get_ifd(tag)
                if 0xA005 in value:  # Interoperability IFD inside the Exif IFD: nest it too, not a stale offset
                    value = {**value, 0xA005: tags.get_ifd(0xA005)}
            if tag in _EXIF_IFD0_TAGS:
                ifd[tag] = value
    ifd[256], ifd[257] = width, height
    ifd[258] = (8 * a.itemsize,) * channels
    ifd[259] = 8  # Adobe Deflate
    ifd[262] = 1 if channels <= 2 else 2  # BlackIsZero / RGB
    ifd[277], ifd[278], ifd[284], ifd[317] = channels, rows, 1, 2
    if channels in (2, 4):
        ifd[338] = (2,)  # unassociated alpha
    if icc:
        ifd[34675] = icc
    padded = [s + b"\x00" * (len(s) & 1) for s in strips]
    ifd[273] = tuple(int(o) for o in np.cumsum([0] + [len(s) for s in padded[:-1]]))
    ifd[279] = tuple(len(s) for s in strips)
    return b"II*\x00" + struct.pack("<I", 8) + ifd.tobytes(8) + b"".join(padded)


def _encode(fmt: str, a: np.ndarray, icc: bytes | None, exif: bytes | None, quality: int) -> bytes | memoryview:
    if fmt == "TIFF":
        return _encode_tiff(a, icc, exif)
    if a.dtype == np.uint16:
        return _encode_png16(a, icc, exif)
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)  # no chroma blur at high quality
    elif fmt == "WEBP":
        options.update(quality=quality, lossless=quality == 100, exact=quality == 100)
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, fmt, **options)
    return buffer.getbuffer()  # the encoded bytes without a second full-size copy


def _pid_running(pid: int) -> bool:
    if os.name != "posix":
        return True  # no harmless probe (os.kill would end it): the age rule decides instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _is_orphan_temp(entry: os.DirEntry) -> bool:
    """A temp file of ours whose writer is gone: its process has ended, or (writer unknown) it is an hour old."""
    match = _TEMP_NAME.match(entry.name)
    if match is None or not entry.is_file(follow_symlinks=False):
        return False
    if match.group(1) is not None and int(match.group(1)) != os.getpid() and not _pid_running(int(match.group(1))):
        return True
    return time.time() - entry.stat(follow_symlinks=False).st_mtime > _ORPHAN_AGE_S


def remove_orphan_temps(folder: Path) -> list[Path]:
    """Delete the temp files a killed run (SIGKILL, power loss) left in `folder`; once per folder per process."""
    key = os.path.normcase(os.path.abspath(folder))
    with _read_lock:
        if key in _swept_folders:
            return []
        _swept_folders.add(key)
    removed = []
    with suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            with suppress(OSError):
                if _is_orphan_temp(entry):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _write_atomic(path: Path, data: bytes | memoryview, overwrite: bool) -> None:
    """Temp file in the same folder, fsync, then rename: readers never see half a file, and a crash leaves the
    old file intact (its temp is removed by the next write into that folder). Without overwrite the final step is
    a hard link, which fails if the name appeared meanwhile (two batch workers, one output name)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphan_temps(path.parent)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                raise ImageError(path, _EXISTS) from None
            except OSError:  # no hard links here (FAT, some network shares)
                if path.exists():
                    raise ImageError(path, _EXISTS)
                os.replace(temp, path)
        fsync_folder(path.parent)
    except OSError as exc:
        raise ImageError(path, f"cannot write file ({exc.strerror or exc})") from exc
    finally:
        with suppress(OSError):  # on a read-only folder this fails too; the error above is the one to tell
            temp.unlink(missing_ok=True)


def save_image(path: str | os.PathLike, rgb: np.ndarray, *, alpha: np.ndarray | None = None, bit_depth: int = 8,
               grey: bool = False, exif: bytes | None = None, icc_profile: bytes | None = None,
               format: str | None = None, quality: int = 95, overwrite: bool = False,
               protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Write float RGB in [0, 1] (rounded, clipped), or uint8/uint16 code values, atomically, keeping alpha,
    16-bit, grey, ICC and EXIF.

    - format: "PNG", "JPEG", "WEBP" or "TIFF" (any SUPPORTED_SAVE_FORMATS key works too); default from the
      extension.
    - bit_depth 16 is kept by PNG and TIFF; JPEG and WebP are always 8-bit.
    - grey=True stores one channel (Rec. 601 luma); WebP has no grey, so it stores RGB, and 16-bit grey with
      alpha is stored as 16-bit RGBA (OpenCV writes no 2-channel PNG, Pillow reads no 16-bit grey+alpha TIFF).
    - JPEG cannot hold alpha: `alpha` is dropped (not composited) for JPEG.
    - quality: JPEG/WebP quality 1..100; WebP at 100 is lossless.
    - EXIF is written with Orientation = 1 since the pixels are upright. An ICC profile that does not match the
      stored channels (an RGB profile on grey data, say) is left out rather than mislabel the pixels.
    - Never replaces an existing file without overwrite=True, and never, whatever overwrite says, a path in
      `protect` or any file load_image has read in this process: originals must survive a wrong output name.
    Raises ImageError (one line, names the file) for anything the user can fix; ValueError for bad arguments.
    """
    path = Path(path)
    fmt = SUPPORTED_SAVE_FORMATS.get("." + (format if format is not None else path.suffix).lower().lstrip("."))
    if fmt is None:
        raise ImageError(path, f"cannot save as {format or path.suffix or 'a file without extension'}; "
                               f"supported: {', '.join(sorted(SUPPORTED_SAVE_FORMATS))}")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or not (rgb.dtype.kind == "f" or rgb.dtype in (np.uint8, np.uint16)):
        raise ValueError(f"rgb must be a float H x W x 3 array in [0, 1] or uint8/uint16 code values, got "
                         f"{rgb.dtype} {rgb.shape}")
    if alpha is not None and (np.shape(alpha) != rgb.shape[:2] or np.asarray(alpha).dtype.kind != "f"):
        raise ValueError(f"alpha must be a float H x W array matching rgb, got {np.shape(alpha)}")
    if bit_depth not in (8, 16) or not 1 <= quality <= 100:
        raise ValueError(f"bit_depth must be 8 or 16 and quality 1..100, got {bit_depth} and {quality}")
    _check_destination(path, overwrite, protect)

    bits = stored_bit_depth(fmt, bit_depth)
    pixels = _quantise(_luma(rgb) if grey and fmt != "WEBP" else rgb, bits, path)
    if alpha is not None and fmt != "JPEG":
        pixels = np.dstack([pixels, _quantise(np.asarray(alpha), bits, path)])
    if pixels.dtype == np.uint16 and pixels.ndim == 3 and pixels.shape[2] == 2:
        pixels = pixels[..., [0, 0, 0, 1]]  # no 2-channel PNG in OpenCV, no 16-bit grey+alpha TIFF in Pillow
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    icc = icc_profile if icc_profile and _icc_matches(icc_profile, channels) else None
    try:
        exif_out = exif_with_orientation_reset(exif) if exif else None
    except ValueError as exc:
        raise ImageError(path, f"the EXIF to write is unreadable ({exc})") from exc
    try:
        data = _encode(fmt, pixels, icc, exif_out, quality)
    except Exception as exc:  # encoder errors (EXIF too long for JPEG, ...) must not escape as raw tracebacks
        raise ImageError(path, f"cannot encode {fmt} ({exc})") from exc
    _write_atomic(path, data, overwrite)
    return path
