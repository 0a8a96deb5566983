"""IPTC-IIM records (caption, keywords, byline, credit, copyright, as news agencies, Photo Mechanic and Lightroom
write them beside XMP) carried from input to output. They describe the photo, not its pixels: kept byte for byte."""
from __future__ import annotations

import struct

from PIL import Image, TiffImagePlugin

from .text import JPEG_SEGMENT_ROOM

TIFF_IPTC_TAG = 33723  # IPTC-NAA
_IPTC_RESOURCE = 0x0404  # the Photoshop image resource a JPEG's APP13 holds the records in
_PHOTOSHOP = b"Photoshop 3.0\x00"


def file_iptc(im: Image.Image) -> bytes | None:
    """The IPTC records of a JPEG (APP13) or TIFF, as Pillow's own getiptcinfo finds them."""
    data = None
    if im.format in ("JPEG", "MPO"):
        resources = im.info.get("photoshop")
        data = resources.get(_IPTC_RESOURCE) if isinstance(resources, dict) else None
    elif isinstance(im, TiffImagePlugin.TiffImageFile):
        data = im.tag_v2._tagdata.get(TIFF_IPTC_TAG)  # raw: Photoshop types it as LONGs
    return bytes(data) if isinstance(data, (bytes, bytearray)) and data else None


def jpeg_iptc_segment(iptc: bytes) -> bytes:
    """An APP13 segment holding the records as Photoshop writes them (one unnamed resource); empty when they do not
    fit one segment, so a JPEG leaves them out rather than fail."""
    resource = b"8BIM" + struct.pack(">HHI", _IPTC_RESOURCE, 0, len(iptc)) + iptc + b"\x00" * (len(iptc) & 1)
    payload = _PHOTOSHOP + resource
    if len(payload) > JPEG_SEGMENT_ROOM:
        return b""
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
