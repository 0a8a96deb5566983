"""Text carried from input to output: PNG text chunks (the prompt and settings image generators store there,
titles, authors, ImageMagick's dates) and JPEG or GIF comments. They describe the photo, not its pixels, so
they are kept as they were."""
from __future__ import annotations

from collections.abc import Mapping

from PIL import Image

COMMENT = "Comment"  # PNG's registered keyword for a comment: where a JPEG or GIF comment goes, and comes from
JPEG_SEGMENT_ROOM = 65533  # the payload of one JPEG marker segment (its length field counts itself)
XMP_PNG_KEYWORD = "XML:com.adobe.xmp"  # XMP has a module of its own (xmp.py)
# ImageMagick's hex copies of EXIF, XMP, Photoshop resources and ICC profiles: stale once restored (its IPTC is kept)
_PIXEL_COPIES = {f"raw profile type {kind}" for kind in ("exif", "app1", "xmp", "8bim", "icc", "icm")}


def file_text(im: Image.Image) -> dict[str, str]:
    """The file's text as Pillow read it (for a PNG: every text chunk once its pixels are loaded, those before the
    image data otherwise), a comment under COMMENT; PNG iTXt values keep their language and translated keyword."""
    if im.format == "PNG":
        return {key: value for key, value in im.info.items() if isinstance(key, str) and isinstance(value, str)
                and key != XMP_PNG_KEYWORD and key.lower() not in _PIXEL_COPIES}
    comment = im.info.get("comment")
    if not isinstance(comment, bytes) or not comment:
        return {}
    try:
        return {COMMENT: comment.decode("utf-8")}
    except UnicodeDecodeError:
        return {COMMENT: comment.decode("latin-1")}


def text_kept_by(file_format: str, text: Mapping[str, str]) -> dict[str, str]:
    """What of `text` a file of this Pillow format can hold: PNG all of it, JPEG its comment (one segment's
    worth), WebP and TIFF none."""
    if file_format == "PNG":
        return dict(text)
    comment = text.get(COMMENT, "")
    if file_format == "JPEG" and comment and len(comment.encode("utf-8")) <= JPEG_SEGMENT_ROOM:
        return {COMMENT: comment}
    return {}
