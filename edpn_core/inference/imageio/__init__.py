"""Reading and writing photos without losing what users care about: ICC profile, EXIF, XMP, text, IPTC, alpha and
16-bit.

Pixels travel as float32 in [0, 1] with EXIF orientation already applied; metadata travels next to them in a
`LoadedImage` so that `save_image` can put it back (`reading`, `writing`, `exif`, `xmp`, `text`,
`iptc`).
"""
from .exif import exif_with_orientation_reset
from .reading import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_PIXELS_VARIABLE,
    FileMetadata,
    ImageError,
    LoadedImage,
    estimate_jpeg_quality,
    file_metadata,
    has_alpha,
    load_image,
    pixel_limit,
)
from .writing import (
    SAVE_FORMATS,
    SaveFormat,
    check_size_fits,
    check_writable,
    code_values,
    metadata_left_out,
    remove_orphan_temps,
    save_format_named,
    save_image,
    stored_bit_depth,
)

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "MAX_PIXELS_VARIABLE", "SAVE_FORMATS", "FileMetadata",
           "ImageError", "LoadedImage", "SaveFormat", "check_size_fits", "check_writable", "code_values",
           "estimate_jpeg_quality", "exif_with_orientation_reset", "file_metadata", "has_alpha", "load_image",
           "metadata_left_out", "pixel_limit", "remove_orphan_temps", "save_format_named", "save_image",
           "stored_bit_depth"]
