"""Writing photos atomically with what they came with (alpha, 16-bit, grey, ICC, EXIF, XMP, text, IPTC): never over
an existing file unless asked, never over an input, never half a file. Pillow encodes, except 16-bit PNG (OpenCV, with
our own metadata chunks) and TIFF (Pillow's IFD serialiser, so 8- and 16-bit TIFFs carry their metadata alike)."""
from __future__ import annotations

import io
import os
import re
import secrets
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, PngImagePlugin, TiffImagePlugin

from ...durable import fsync_folder
from .exif import (
    EXIF_HEADER,
    EXIF_IFD0_TAGS,
    EXIF_SUB_IFDS,
    exif_with_orientation_reset,
    exif_with_pixel_size,
    exif_within,
)
from .iptc import TIFF_IPTC_TAG, jpeg_iptc_segment
from .reading import ImageError, file_identities, was_read
from .text import COMMENT, JPEG_SEGMENT_ROOM, XMP_PNG_KEYWORD, text_kept_by
from .xmp import xmp_for_pixels

# XMP in a JPEG is one APP1 segment (less 29 bytes for the XMP namespace): a larger packet (a PNG's or a TIFF's) is
# left out of a JPEG rather than fail the save.
_JPEG_XMP_ROOM = JPEG_SEGMENT_ROOM - 29
_JFIF_MAX_DENSITY = 65535  # JFIF stores dots per inch in 16 bits (WebP none: its EXIF says it)


@dataclass(frozen=True)
class SaveFormat:
    """A format photos are saved in: how Pillow and people name it, the extension outputs get (and others that
    name it), and what it keeps."""

    pillow: str
    label: str
    extension: str
    other_names: tuple[str, ...]
    alpha: bool
    sixteen_bit: bool
    quality: bool  # takes a JPEG/WebP quality setting
    max_side: int | None = None  # the largest width or height its encoder writes (libjpeg 65500, libwebp 16383)


# The formats `save_image`, `edpn restore --format` and the app offer, by the name they are chosen by.
SAVE_FORMATS: dict[str, SaveFormat] = {
    "png": SaveFormat("PNG", "PNG", ".png", (), alpha=True, sixteen_bit=True, quality=False),
    "jpg": SaveFormat("JPEG", "JPEG", ".jpg", ("jpeg",), alpha=False, sixteen_bit=False, quality=True,
                      max_side=65500),
    "webp": SaveFormat("WEBP", "WebP", ".webp", (), alpha=True, sixteen_bit=False, quality=True, max_side=16383),
    "tiff": SaveFormat("TIFF", "TIFF", ".tiff", ("tif",), alpha=True, sixteen_bit=True, quality=False),
}
_SAVE_FORMAT_NAMES = {name: key for key, f in SAVE_FORMATS.items() for name in (key, f.pillow.lower(), *f.other_names)}


def save_format_named(name: str) -> str | None:
    """The SAVE_FORMATS key that a format name or a file extension ("JPEG", ".jpeg", "tif") stands for, if any."""
    return _SAVE_FORMAT_NAMES.get(name.lower().lstrip("."))


# Temp files _write_atomic makes: ".NAME.PID-HEX.tmp" (older versions: ".NAME.HEX.tmp").
_TEMP_NAME = re.compile(r"^\..+\.(?:(\d+)-)?[0-9a-f]{8}\.tmp$")
_ORPHAN_AGE_S = 3600  # a temp whose writer cannot be identified is an orphan after this long
_EXISTS = "already exists; refusing to overwrite it (overwrite=True replaces it)"
_sweep_lock = threading.Lock()
_swept_folders: set[str] = set()  # output folders already cleared of temp files left by killed runs


def _check_destination(path: Path, overwrite: bool, protect: Iterable[str | os.PathLike]) -> None:
    if path.is_dir():
        raise ImageError(path, "is a folder; give a file name to save to")
    target = file_identities(path)
    protected = set().union(*(file_identities(Path(p)) for p in protect))
    if not target.isdisjoint(protected) or was_read(path):
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


def check_size_fits(path: Path, width: int, height: int, format: str | None = None) -> None:
    """Refuse a size the format (`format`, else the extension of `path`) cannot hold. A batch checks before
    restoring, so an x4 result too large for WebP or JPEG fails at once rather than after minutes of work."""
    key = save_format_named(format if format is not None else path.suffix)
    spec = SAVE_FORMATS[key] if key is not None else None
    if spec is not None and spec.max_side is not None and max(width, height) > spec.max_side:
        roomier = " or ".join(f.label for f in SAVE_FORMATS.values() if f.max_side is None)
        raise ImageError(path, f"{width} x {height} px is more than {spec.label} holds ({spec.max_side} px a side); "
                               f"save as {roomier}")


def stored_bit_depth(fmt: str, bit_depth: int) -> int:
    """Bits per sample the format `fmt` names (as save_format_named reads it) keeps: PNG and TIFF keep 16, JPEG
    and WebP hold 8."""
    key = save_format_named(fmt)
    return bit_depth if key is not None and SAVE_FORMATS[key].sixteen_bit else 8


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


@dataclass(frozen=True)
class _Carried:
    """What one save writes besides the pixels, already made to describe them."""

    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    text: Mapping[str, str] = field(default_factory=dict)
    iptc: bytes | None = None
    dpi: tuple[float, float] | None = None


def _png_text_chunks(xmp: bytes | None, text: Mapping[str, str]) -> PngImagePlugin.PngInfo:
    """XMP (uncompressed, no language, as Adobe writes it) and the text, each value uncompressed whatever it came
    as: ComfyUI and other generators' readers look for their settings in plain tEXt chunks only."""
    chunks = PngImagePlugin.PngInfo()
    if xmp:
        chunks.add_itxt(XMP_PNG_KEYWORD, xmp)
    for key, value in text.items():
        chunks.add_text(key, value)
    return chunks


def _encode_png16(a: np.ndarray, carried: _Carried) -> bytes:
    """16-bit PNG via OpenCV (Pillow cannot write 16-bit colour), then iCCP/eXIf/pHYs/text chunks inserted after
    IHDR, as Pillow writes them for 8-bit PNGs."""
    if a.ndim == 3:
        a = a[..., [2, 1, 0, 3][:a.shape[2]]]  # RGB(A) -> BGR(A)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(a))
    if not ok:
        raise ValueError("OpenCV could not encode the PNG")
    png = encoded.tobytes()
    if png[12:16] != b"IHDR":
        raise ValueError("OpenCV wrote a PNG that does not start with IHDR")
    chunks = b""
    if carried.icc:
        chunks += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(carried.icc))
    if carried.exif:
        chunks += _png_chunk(b"eXIf", carried.exif[len(EXIF_HEADER):])
    if carried.dpi:
        chunks += _png_chunk(b"pHYs", struct.pack(">IIB", *(int(d / 0.0254 + 0.5) for d in carried.dpi), 1))
    text_chunks = _png_text_chunks(carried.xmp, carried.text)
    chunks += b"".join(_png_chunk(kind, payload) for kind, payload, *_ in text_chunks.chunks)
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, length, "IHDR", 13 bytes of data, CRC
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def _deflate_rle(data: bytes) -> bytes:
    """zlib's run-length strategy, made for filtered image rows: 4-8x faster than the default on photos, for
    files from 9% smaller to 6% larger (docs/BENCHMARKS.md). Any inflate reads it."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS, 8, zlib.Z_RLE)
    return compressor.compress(data) + compressor.flush()


def _encode_tiff(a: np.ndarray, carried: _Carried) -> bytes:
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
    strips = [_deflate_rle(deltas[y:y + rows].tobytes()) for y in range(0, height, rows)]
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    if carried.exif:
        tags = Image.Exif()
        tags.load(carried.exif)
        for tag, value in tags.items():
            if tag in EXIF_SUB_IFDS:
                value = tags.get_ifd(tag)
                if 0xA005 in value:  # Interoperability IFD inside the Exif IFD: nest it too, not a stale offset
                    value = {**value, 0xA005: tags.get_ifd(0xA005)}
            if tag in EXIF_IFD0_TAGS:
                ifd[tag] = value
    ifd[256], ifd[257] = width, height
    ifd[258] = (8 * a.itemsize,) * channels
    ifd[259] = 8  # Adobe Deflate
    ifd[262] = 1 if channels <= 2 else 2  # BlackIsZero / RGB
    ifd[277], ifd[278], ifd[284], ifd[317] = channels, rows, 1, 2
    if channels in (2, 4):
        ifd[338] = (2,)  # unassociated alpha
    if carried.icc:
        ifd[34675] = carried.icc
    if carried.xmp:
        ifd[700] = carried.xmp
    if carried.iptc:
        ifd[TIFF_IPTC_TAG] = carried.iptc
    if carried.dpi:
        ifd[282], ifd[283], ifd[296] = *carried.dpi, 2  # XResolution, YResolution, in inches
    padded = [s + b"\x00" * (len(s) & 1) for s in strips]
    ifd[273] = tuple(int(o) for o in np.cumsum([0] + [len(s) for s in padded[:-1]]))
    ifd[279] = tuple(len(s) for s in strips)
    return b"II*\x00" + struct.pack("<I", 8) + ifd.tobytes(8) + b"".join(padded)


def _fitted(fmt: str, carried: _Carried) -> _Carried:
    """What of `carried` a file of this Pillow format holds: the one place that decides it, for _encode and for
    metadata_left_out. A JPEG takes one segment of EXIF (without its maker note if need be), of XMP, of IPTC and
    its text's comment; WebP no IPTC, text or resolution (its EXIF says it); PNG no IPTC; TIFF no text."""
    jpeg = fmt == "JPEG"
    return _Carried(
        icc=carried.icc,
        exif=exif_within(carried.exif, JPEG_SEGMENT_ROOM) if carried.exif and jpeg else carried.exif,
        xmp=None if carried.xmp and jpeg and len(carried.xmp) > _JPEG_XMP_ROOM else carried.xmp,
        text=text_kept_by(fmt, carried.text),
        iptc=carried.iptc if fmt == "TIFF" or jpeg and carried.iptc and jpeg_iptc_segment(carried.iptc) else None,
        dpi=None if fmt == "WEBP" or jpeg and carried.dpi and max(carried.dpi) > _JFIF_MAX_DENSITY else carried.dpi)


def _encode(fmt: str, a: np.ndarray, carried: _Carried, quality: int) -> bytes | memoryview:
    carried = _fitted(fmt, carried)
    if fmt == "TIFF":
        return _encode_tiff(a, carried)
    if a.dtype == np.uint16:
        return _encode_png16(a, carried)
    options: dict[str, object] = {}
    if carried.icc:
        options["icc_profile"] = carried.icc
    if carried.exif:
        options["exif"] = carried.exif
    if carried.xmp and fmt != "PNG":  # PNG: in its text chunks
        options["xmp"] = carried.xmp
    if carried.dpi:
        options["dpi"] = carried.dpi
    if fmt == "PNG":
        options["compress_type"] = zlib.Z_RLE  # as _deflate_rle, through Pillow's encoder
        options["pnginfo"] = _png_text_chunks(carried.xmp, carried.text)
    elif fmt == "JPEG":
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)  # no chroma blur at high quality
        if COMMENT in carried.text:
            options["comment"] = carried.text[COMMENT].encode("utf-8")
        if carried.iptc:
            options["extra"] = jpeg_iptc_segment(carried.iptc)  # Pillow writes these among its own APPn segments
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
    with _sweep_lock:
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


def check_writable(folder: Path) -> None:
    """Refuse an output folder no file can be created in (read-only, no permission) before any work, rather than
    after every photo is restored; a folder still to be made is tried at its nearest existing parent."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ImageError(folder, f"cannot write into this folder ({exc.strerror or exc})") from exc


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


def metadata_left_out(file_format: str, *, exif: bytes | None = None, xmp: bytes | None = None,
                      iptc: bytes | None = None, text: Mapping[str, str] | None = None) -> list[str]:
    """What of this metadata save_image would leave out of a file of this Pillow format, named for a message
    ("EXIF maker note", "IPTC", "text parameters, workflow"), so the app can say so."""
    given = _Carried(exif=exif, xmp=xmp, text=text or {}, iptc=iptc)
    kept = _fitted(file_format, given)
    left_out = []
    if given.exif and kept.exif != given.exif:
        left_out.append("EXIF maker note" if kept.exif else "EXIF")
    if given.xmp and not kept.xmp:
        left_out.append("XMP")
    if given.iptc and not kept.iptc:
        left_out.append("IPTC")
    if missing_text := [key for key in given.text if key not in kept.text]:
        left_out.append("text " + ", ".join(missing_text))
    return left_out


def save_image(path: str | os.PathLike, rgb: np.ndarray, *, alpha: np.ndarray | None = None, bit_depth: int = 8,
               grey: bool = False, exif: bytes | None = None, icc_profile: bytes | None = None,
               xmp: bytes | None = None, text: Mapping[str, str] | None = None, iptc: bytes | None = None,
               dpi: tuple[float, float] | None = None, format: str | None = None, quality: int = 95,
               overwrite: bool = False, protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Write float RGB in [0, 1] (rounded, clipped), or uint8/uint16 code values, atomically, keeping alpha,
    16-bit, grey, ICC, EXIF, XMP, text and IPTC.

    - format: "PNG", "JPEG", "WEBP" or "TIFF", or any name `save_format_named` knows; default from the
      extension.
    - bit_depth 16 is kept by PNG and TIFF; JPEG and WebP are always 8-bit.
    - grey=True stores one channel (Rec. 601 luma); WebP has no grey, so it stores RGB, and 16-bit grey with
      alpha is stored as 16-bit RGBA (OpenCV writes no 2-channel PNG, Pillow reads no 16-bit grey+alpha TIFF).
    - JPEG cannot hold alpha: `alpha` is dropped (not composited) for JPEG.
    - quality: JPEG/WebP quality 1..100; WebP at 100 is lossless.
    - EXIF is written with Orientation = 1 since the pixels are upright, and with the saved size in its
      PixelXDimension/PixelYDimension; XMP's orientation and size properties are set alike. An ICC profile that
      does not match the stored channels (an RGB profile on grey data, say) is left out rather than mislabel
      the pixels.
    - Text (LoadedImage.text) goes whole into a PNG; a JPEG holds its COMMENT, WebP and TIFF none of it. IPTC goes
      into JPEG (APP13) and TIFF. What does not fit a JPEG's one segment is left out rather than fail the save
      (EXIF first loses its maker note): metadata_left_out names it.
    - dpi: the print resolution (across, down) for JFIF, PNG's pHYs and TIFF's tags (WebP has none: its EXIF
      says it); restore_image multiplies it by the scale, so a result prints at the photo's size.
    - Never replaces an existing file without overwrite=True, and never, whatever overwrite says, a path in
      `protect` or any file load_image has read in this process: originals must survive a wrong output name.
    Raises ImageError (one line, names the file) for anything the user can fix; ValueError for bad arguments.
    """
    path = Path(path)
    key = save_format_named(format if format is not None else path.suffix)
    if key is None:
        raise ImageError(path, f"cannot save as {format or path.suffix or 'a file without extension'}; "
                               f"supported: {', '.join(sorted(_SAVE_FORMAT_NAMES))}")
    fmt = SAVE_FORMATS[key].pillow
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or not (rgb.dtype.kind == "f" or rgb.dtype in (np.uint8, np.uint16)):
        raise ValueError(f"rgb must be a float H x W x 3 array in [0, 1] or uint8/uint16 code values, got "
                         f"{rgb.dtype} {rgb.shape}")
    if alpha is not None and (np.shape(alpha) != rgb.shape[:2] or np.asarray(alpha).dtype.kind != "f"):
        raise ValueError(f"alpha must be a float H x W array matching rgb, got {np.shape(alpha)}")
    if dpi is not None and not (len(dpi) == 2 and all(0 < value < 1e7 for value in dpi)):
        raise ValueError(f"dpi must be two positive numbers, got {dpi}")
    if bit_depth not in (8, 16) or not 1 <= quality <= 100:
        raise ValueError(f"bit_depth must be 8 or 16 and quality 1..100, got {bit_depth} and {quality}")
    _check_destination(path, overwrite, protect)
    check_size_fits(path, rgb.shape[1], rgb.shape[0], fmt)

    bits = stored_bit_depth(fmt, bit_depth)
    pixels = _quantise(_luma(rgb) if grey and fmt != "WEBP" else rgb, bits, path)
    if alpha is not None and fmt != "JPEG":
        pixels = np.dstack([pixels, _quantise(np.asarray(alpha), bits, path)])
    if pixels.dtype == np.uint16 and pixels.ndim == 3 and pixels.shape[2] == 2:
        pixels = pixels[..., [0, 0, 0, 1]]  # no 2-channel PNG in OpenCV, no 16-bit grey+alpha TIFF in Pillow
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    icc = icc_profile if icc_profile and _icc_matches(icc_profile, channels) else None
    try:
        exif_out = exif_with_pixel_size(exif_with_orientation_reset(exif), rgb.shape[1], rgb.shape[0]) if exif else None
    except ValueError as exc:
        raise ImageError(path, f"the EXIF to write is unreadable ({exc})") from exc
    try:
        xmp_out = xmp_for_pixels(xmp, rgb.shape[1], rgb.shape[0]) if xmp else None
        carried = _Carried(icc, exif_out, xmp_out, text or {}, iptc, dpi)
        data = _encode(fmt, pixels, carried, quality)
    except Exception as exc:  # encoder errors (EXIF too long for JPEG, ...) must not escape as raw tracebacks
        raise ImageError(path, f"cannot encode {fmt} ({exc})") from exc
    _write_atomic(path, data, overwrite)
    return path
