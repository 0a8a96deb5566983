"""XMP (keywords, ratings, captions, editing records) carried from input to output, with the properties that
describe the pixels rewritten: the output is upright and may be four times larger."""
from __future__ import annotations

import re

from PIL import Image


def file_xmp(im: Image.Image) -> bytes | None:
    """The XMP packet Pillow found in a JPEG, PNG, WebP or TIFF, read before exif_transpose edits it."""
    xmp = im.info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return xmp or None


def xmp_for_pixels(xmp: bytes, width: int, height: int) -> bytes:
    """`xmp` describing upright pixels of this size: its orientation and size properties, where present as an
    attribute (name="6") or an element (<name>6</name>), rewritten; every other byte as it was."""
    values = {"tiff:Orientation": 1, "tiff:ImageWidth": width, "tiff:ImageLength": height,
              "exif:PixelXDimension": width, "exif:PixelYDimension": height}
    for name, value in values.items():
        key = re.escape(name.encode())
        xmp = re.sub(rb"(\b" + key + rb"\s*=\s*[\"'])\s*\d+\s*([\"'])", rb"\g<1>%d\g<2>" % value, xmp)
        xmp = re.sub(rb"(<" + key + rb">)\s*\d+\s*(</" + key + rb">)", rb"\g<1>%d\g<2>" % value, xmp)
    return xmp
