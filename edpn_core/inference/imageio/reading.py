"""Reading photos: any 8/16-bit PNG, TIFF, JPEG, WebP, BMP or AVIF as upright float32 with alpha, ICC, EXIF and
XMP kept, every failure one line, sizes checked from the header before anything is decoded. Every file read is
remembered, so that saving never replaces an input."""
from __future__ import annotations

import io
import os
import struct
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TypedDict

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageOps, TiffImagePlugin, UnidentifiedImageError, features

from .exif import (
    EXIF_HEADER,
    apply_orientation,
    exif_with_orientation_reset,
    file_exif,
    read_orientation,
    tiff_with_orientation_reset,
)
from .iptc import file_iptc
from .text import file_text
from .xmp import file_xmp, xmp_for_pixels

# Larger than any consumer camera's photo (100 MP), small enough that a hostile 18 KB PNG declaring 150 MP is
# refused rather than restored for hours. EDPN_MAX_MEGAPIXELS (or a caller's max_pixels) changes it.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_VARIABLE = "EDPN_MAX_MEGAPIXELS"
# A file may hold metadata and compressed pixels but not far more than its pixels uncompressed (8 bytes each at
# 16-bit RGBA) plus this: anything beyond is refused before it is read into memory.
_FILE_SLACK_BYTES = 64 << 20
# What folder scans and the app's file dialogs offer; AVIF where this Pillow was built with libavif.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".tif", ".tiff", ".bmp"}
    | ({".avif"} if features.check("avif") else set()))
# Modes Pillow decodes faithfully, and what they become before reaching numpy.
_PILLOW_MODES = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "P": "RGB", "PA": "RGBA", "RGB": "RGB",
                 "RGBA": "RGBA", "RGBa": "RGBA", "RGBX": "RGB", "YCbCr": "RGB", "CMYK": "RGB",
                 "I;16": "I;16", "I;16L": "I;16", "I;16B": "I;16", "I;16N": "I;16"}
# Modes whose files may name one colour transparent (a tRNS chunk, a GIF's index): decoded with an alpha channel.
_COLOUR_KEYED_MODES = frozenset({"1", "L", "P", "RGB"})
# Modes Pillow reports for 16-bit files it would truncate to 8 bits (or, for "I", widen): OpenCV reads those.
_OPENCV_16BIT_MODES = frozenset({"RGB", "RGBA", "RGBX", "LA", "I"})
# IJG (libjpeg) luminance quantisation table, natural order, as in Pillow's `quantization[0]`.
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)

# The pixel limit is ours (checked from the header, refused as one line); Pillow's warning below its own
# error threshold would be a second, stray line on stderr for the same image.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_pillow_limit_lock = threading.Lock()
_read_lock = threading.Lock()
_read_paths: set[object] = set()  # identities of every file load_image has read: save_image never replaces them
_stderr_lock = threading.Lock()


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
    xmp: bytes | None  # raw XMP packet describing the upright pixels (xmp.xmp_for_pixels)
    text: dict[str, str]  # PNG text chunks, a JPEG's or GIF's comment (text.file_text)
    iptc: bytes | None  # IPTC-IIM records of a JPEG or TIFF (iptc.file_iptc)
    dpi: tuple[float, float] | None  # print resolution (JFIF, pHYs, TIFF or EXIF), across and down the upright pixels
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

    @property
    def dpi_label(self) -> str | None:
        """"300 dpi", "300 x 200 dpi", or None when the file states no resolution."""
        if self.dpi is None:
            return None
        across, down = (round(value) for value in self.dpi)
        return f"{across} dpi" if across == down else f"{across} x {down} dpi"


def file_identities(path: Path) -> set[object]:
    """Ways to recognise a file: its resolved, case-normalised path, and (device, inode) when it exists."""
    ids: set[object] = {os.path.normcase(str(path.resolve()))}
    try:
        st = os.stat(path)
        ids.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    return ids


def was_read(path: Path) -> bool:
    """Whether load_image has read this file (under any name) in this process."""
    with _read_lock:
        return not file_identities(path).isdisjoint(_read_paths)


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
        if path.suffix.lower() in (".heic", ".heif"):  # README, "What restore reads": why not yet
            raise ImageError(path, "HEIC photos are not read yet: export it as JPEG (an iPhone takes JPEGs with "
                                   "Settings > Camera > Formats > Most Compatible)") from exc
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


def _check_enough_data(path: Path, size: int, im: Image.Image) -> None:
    """Refuse a JPEG too small to hold its declared pixels (truncated, or a forged header): libjpeg fills what is
    missing with grey without an error, so a 1 KB file declaring 9000 x 9000 would be restored for many minutes.
    Huffman coding spends at least one bit on each 8 x 8 block of the fullest component (its DC code)."""
    if im.format not in ("JPEG", "MPO"):
        return
    need = im.width * im.height // 512
    if size < need:
        raise ImageError(path, f"file is {size} bytes, too little data for a {im.width} x {im.height} JPEG (at "
                               f"least {need} bytes: a bit per 8 x 8 block): truncated, or a forged header")


def _declared_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from the first 32 bytes of a PNG or WebP, the formats whose header Pillow cannot parse
    without reading far (every PNG chunk before the pixels, or the whole WebP file)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
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
    a file larger than its declared pixels can need (or, before its size is known, than the limit allows), or
    a JPEG smaller than they need, is refused unread."""
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
                _check_enough_data(path, size, probe)
            f.seek(0)
            return f.read()
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or exc})") from exc


def _header_depth_and_grey(im: Image.Image, data: bytes) -> tuple[int, bool]:
    """Bits per sample and greyness as stored, which Pillow's mode hides for 16-bit colour and grey+alpha."""
    if im.format == "PNG" and data[12:16] == b"IHDR":
        return data[24], data[25] in (0, 4)
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        bits = im.tag_v2.get(258, 8)
        return max(bits) if isinstance(bits, tuple) else bits, im.tag_v2.get(262) in (0, 1)
    return (16 if im.mode.startswith("I;16") else 8), im.mode in ("1", "L", "LA", "La")


@contextmanager
def _native_messages() -> Iterator[Callable[[], str]]:
    """Keep what C libraries (libpng, libtiff, OpenCV's log) print to the process's stderr meanwhile off the
    terminal: the file's own one-line error says what went wrong, and their lines would tear the progress
    output. Yields a function giving the first line they printed so far, for that error."""
    with _stderr_lock, tempfile.TemporaryFile(buffering=0) as sink:
        if sys.stderr is not None:  # None in a windowed app
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep them off
            yield lambda: ""
            return
        os.dup2(sink.fileno(), 2)

        def first_line() -> str:
            sink.seek(0)
            return next((line.strip() for line in sink.read().decode(errors="replace").splitlines()
                         if line.strip()), "")
        try:
            yield first_line
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _decode_opencv(im: Image.Image, data: bytes, grey: bool, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """16-bit colour or grey+alpha, which Pillow would truncate. Returns (colour, alpha) as stored, unrotated."""
    if im.format == "TIFF":
        # OpenCV 5 applies a TIFF's orientation even with IMREAD_UNCHANGED; hide it so it is applied once.
        try:
            data = tiff_with_orientation_reset(data)
        except ValueError:
            pass  # BigTIFF or odd Orientation: the size check below still catches a rotated result
    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    # Recent Pillow reports a TIFF's size already turned by its orientation; compare with the stored size.
    stored: tuple[object, object] = (im.height, im.width)
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        stored = (im.tag_v2.get(257), im.tag_v2.get(256))
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
            converted = ImageCms.profileToProfile(im, source, srgb, outputMode="RGB")
            if converted is not None:  # None only for in-place conversions
                return converted, _srgb_icc()
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken or non-CMYK profile: the plain conversion below is still a usable picture
    return im.convert("RGB"), None


def _decode_pillow(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """(colour, alpha, icc_profile) upright from a loaded image in a _PILLOW_MODES mode; colour is 2-D for grey."""
    mode, icc = im.mode, im.info.get("icc_profile") or None
    try:
        ImageOps.exif_transpose(im, in_place=True)  # Pillow knows whether it turned the pixels already (TIFF)
    except Exception:  # noqa: BLE001 - whatever Pillow raises on damaged EXIF
        pass  # EXIF too damaged to say: the pixels stay as stored, and load_image drops that EXIF
    if mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc)
    elif "transparency" in im.info and mode in _COLOUR_KEYED_MODES:
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
        _read_paths.update(file_identities(path))


def _file_dpi(im: Image.Image) -> tuple[float, float] | None:
    """The resolution Pillow found (JPEG: JFIF, else EXIF; PNG: pHYs; TIFF: its tags, in inches or cm), when both
    values are usable; not the 72 dpi Pillow reports for a JPEG that states none."""
    dpi = im.info.get("dpi")
    if im.format in ("JPEG", "MPO") and im.info.get("jfif_unit") not in (1, 2) and 0x011A not in im.getexif():
        return None
    if not isinstance(dpi, tuple) or len(dpi) != 2:
        return None
    try:
        across, down = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError):
        return None
    return (across, down) if all(0 < value < 1e6 for value in (across, down)) else None


class FileMetadata(TypedDict):
    exif: bytes | None
    xmp: bytes | None
    iptc: bytes | None
    text: dict[str, str]


def has_alpha(im: Image.Image) -> bool:
    """Whether load_image gives this opened file an alpha channel, told from its header alone."""
    return _PILLOW_MODES.get(im.mode) in ("LA", "RGBA") or "transparency" in im.info and im.mode in _COLOUR_KEYED_MODES


def file_metadata(im: Image.Image) -> FileMetadata:
    """What a restore carries from the file, as the file holds it: read before exif_transpose edits EXIF (losing
    maker notes) and XMP (its orientation); metadata_left_out takes it as it is."""
    return FileMetadata(exif=file_exif(im), xmp=file_xmp(im), iptc=file_iptc(im), text=file_text(im))


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> LoadedImage:
    """Read any 8/16-bit PNG, TIFF, JPEG, WebP, BMP or AVIF as upright float32 RGB, keeping alpha, ICC, EXIF, XMP,
    text and IPTC.

    Every failure (missing, empty, not an image, truncated, too many pixels, unsupported mode) is an ImageError
    with a one-line message; the header (format, size against `max_pixels`, default `pixel_limit()`) is checked
    before the rest of the file is read or anything decoded.
    """
    path = Path(path)
    limit = max_pixels if max_pixels is not None else pixel_limit()
    _check_file(path)
    _let_pillow_allow(limit)
    data = _read_checked(path, limit)  # then bytes: no handle kept open, OpenCV gets bytes (non-ASCII paths work)
    with _open_pillow(io.BytesIO(data), path, limit) as im, _native_messages() as native_message:
        try:
            frames = getattr(im, "n_frames", 1)
            if frames > 1 and im.format != "MPO":  # an MPO's first picture is the photo, the rest previews
                raise ImageError(path, f"holds {frames} frames (an animation or a multi-page file); only single "
                                       "images are restored: save the frame wanted as an image of its own")
            bits, header_grey = _header_depth_and_grey(im, data)
            by_opencv = bits == 16 and im.mode in _OPENCV_16BIT_MODES
            if by_opencv:
                colour, alpha = _decode_opencv(im, data, header_grey, path)
                icc = im.info.get("icc_profile") or None
                mode = ("L" if colour.ndim == 2 else "RGB") + ("A" if alpha is not None else "") + ";16"
                raw = file_metadata(im)
            elif im.mode in _PILLOW_MODES:
                mode = im.mode
                im.load()
                raw = file_metadata(im)
                colour, alpha, icc = _decode_pillow(im)
            else:
                raise ImageError(path, f"unsupported colour mode {im.mode}")
            quality = estimate_jpeg_quality(im)
            dpi = _file_dpi(im)
        except Exception as exc:  # Pillow/OpenCV raise many types for damaged data; none may escape raw
            reason = exc.reason if isinstance(exc, ImageError) else f"truncated or corrupt image data ({exc})"
            said = native_message()
            raise ImageError(path, f"{reason} ({said[:160]})" if said else reason) from exc
        file_format = "JPEG" if im.format == "MPO" else (im.format or "unknown")
    try:
        raw_exif = raw["exif"]
        tiff = raw_exif[len(EXIF_HEADER):] if raw_exif and raw_exif.startswith(EXIF_HEADER) else raw_exif
        orientation = read_orientation(tiff) if tiff else 1
        exif = exif_with_orientation_reset(tiff) if tiff else None
    except ValueError:
        orientation, exif = 1, None  # unreadable EXIF is dropped rather than making the photo unreadable
    if dpi and orientation in (5, 6, 7, 8):
        dpi = (dpi[1], dpi[0])
    if by_opencv:  # Pillow has turned its pixels already
        colour = apply_orientation(colour, orientation)
        alpha = None if alpha is None else apply_orientation(alpha, orientation)
    rgb = _to_unit_float(colour)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    _remember_input(path)
    return LoadedImage(
        rgb=rgb, alpha=None if alpha is None else _to_unit_float(alpha),
        bit_depth=16 if colour.dtype == np.uint16 else 8, grey=colour.ndim == 2, mode=mode, format=file_format,
        exif=exif, icc_profile=icc, xmp=xmp_for_pixels(raw["xmp"], rgb.shape[1], rgb.shape[0]) if raw["xmp"] else None,
        text=raw["text"], iptc=raw["iptc"], dpi=dpi, jpeg_quality=quality, path=path)


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
