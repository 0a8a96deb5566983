"""Round trips a user would notice (depth, alpha, grey, ICC, EXIF, orientation) and refusals that protect files."""
import dataclasses
import io
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, features

from edpn_core.inference import imageio
from edpn_core.inference.batch import collect_inputs
from edpn_core.inference.imageio import (
    SAVE_FORMATS,
    ImageError,
    estimate_jpeg_quality,
    load_image,
    metadata_left_out,
    save_format_named,
    save_image,
    writing,
)

DATE = "2021:06:01 12:34:56"


@pytest.fixture(scope="module")
def srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def make_exif(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Test camera"
    exif.get_ifd(0x8769)[0x9003] = DATE  # DateTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 22.0, 30.0)  # GPSLatitudeRef, GPSLatitude
    return exif.tobytes()


def assert_exif_kept(exif: Image.Exif) -> None:
    assert exif.get(0x0112, 1) == 1
    assert exif.get_ifd(0x8769)[0x9003] == DATE
    gps = exif.get_ifd(0x8825)
    assert gps[1] == "N" and [float(v) for v in gps[2]] == [52.0, 22.0, 30.0]


def codes(x: np.ndarray, bits: int) -> np.ndarray:
    return np.rint(x * (2 ** bits - 1)).astype(np.int64)


def test_png8_rgb_round_trip_is_exact(tmp_path, rng):
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert (loaded.format, loaded.bit_depth, loaded.grey, loaded.alpha) == ("PNG", 8, False, None)
    assert loaded.rgb.dtype == np.float32 and (loaded.width, loaded.height) == (7, 5)
    assert loaded.megapixels == pytest.approx(35e-6)
    assert np.array_equal(codes(loaded.rgb, 8), pixels)
    out = save_image(tmp_path / "out.png", loaded.rgb)
    assert np.array_equal(np.asarray(Image.open(out)), pixels)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_rgba_keeps_depth_values_alpha_icc_and_exif(tmp_path, rng, srgb, ext):
    bgra = rng.integers(0, 65536, (6, 5, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / f"in{ext}"), bgra)
    loaded = load_image(tmp_path / f"in{ext}")
    rgb = bgra[..., 2::-1]
    assert (loaded.bit_depth, loaded.mode, loaded.grey) == (16, "RGBA;16", False)
    assert np.array_equal(codes(loaded.rgb, 16), rgb) and np.array_equal(codes(loaded.alpha, 16), bgra[..., 3])

    out = save_image(tmp_path / f"out{ext}", loaded.rgb, alpha=loaded.alpha, bit_depth=16, icc_profile=srgb,
                     exif=make_exif())
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.array_equal(back, bgra)
    with Image.open(out) as im:  # Pillow reads the metadata of files whose pixels it cannot
        assert im.info["icc_profile"] == srgb
        assert_exif_kept(im.getexif())
    again = load_image(out)
    assert again.icc_profile == srgb and again.bit_depth == 16
    assert np.array_equal(codes(again.rgb, 16), rgb) and np.array_equal(codes(again.alpha, 16), bgra[..., 3])


def test_16bit_rgb_png_without_alpha(tmp_path, rng, srgb):
    rgb = rng.integers(0, 65536, (4, 3, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "in.png"), rgb[..., ::-1])
    loaded = load_image(tmp_path / "in.png")
    assert (loaded.bit_depth, loaded.mode, loaded.alpha) == (16, "RGB;16", None)
    out = save_image(tmp_path / "out.png", loaded.rgb, bit_depth=16, icc_profile=srgb)
    assert np.array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., ::-1], rgb)
    assert load_image(out).icc_profile == srgb


@pytest.mark.parametrize("ext,bits", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".jpg", 8)])
def test_grey_stays_grey(tmp_path, rng, ext, bits):
    grey = rng.integers(0, 2 ** bits, (6, 4)).astype(np.uint8 if bits == 8 else np.uint16)
    cv2.imwrite(str(tmp_path / f"in{ext}"), grey, [cv2.IMWRITE_JPEG_QUALITY, 100])
    loaded = load_image(tmp_path / f"in{ext}")
    assert loaded.grey and loaded.bit_depth == bits and loaded.rgb.shape == (6, 4, 3)
    assert np.array_equal(loaded.rgb[..., 0], loaded.rgb[..., 2])
    out = save_image(tmp_path / f"out{ext}", loaded.rgb, bit_depth=bits, grey=True, quality=100)
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.ndim == 2 and back.dtype == grey.dtype
    if ext != ".jpg":
        assert np.array_equal(back, codes(loaded.rgb[..., 0], bits))


@pytest.mark.parametrize("ext,quality", [(".png", 95), (".webp", 100), (".tif", 95)])
def test_rgba_keeps_alpha_exactly(tmp_path, rng, ext, quality):
    rgba = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert np.array_equal(codes(loaded.alpha, 8), rgba[..., 3])
    out = save_image(tmp_path / f"out{ext}", loaded.rgb, alpha=loaded.alpha, quality=quality)
    assert np.array_equal(np.asarray(Image.open(out).convert("RGBA")), rgba)


def test_16bit_grey_with_alpha_keeps_depth_and_alpha(tmp_path, rng):
    grey, alpha = rng.random((3, 4)), rng.random((3, 4))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    out = save_image(tmp_path / "out.png", rgb, alpha=alpha, grey=True, bit_depth=16)
    loaded = load_image(out)  # stored as RGBA: OpenCV writes no 2-channel PNG
    assert loaded.bit_depth == 16 and np.array_equal(codes(loaded.alpha, 16), codes(alpha, 16))
    assert np.array_equal(codes(loaded.rgb[..., 1], 16), codes(grey, 16))


def test_palette_transparency_becomes_alpha(tmp_path):
    im = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    im.save(tmp_path / "in.png", transparency=0)
    loaded = load_image(tmp_path / "in.png")
    assert loaded.mode == "P" and not loaded.grey
    assert np.array_equal(loaded.alpha, [[0, 1], [1, 1]])
    assert np.array_equal(codes(loaded.rgb, 8)[0, 1], [255, 0, 0]) and np.array_equal(
        codes(loaded.rgb, 8)[1, 0], [0, 0, 255])


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "in.jpg", quality=95)
    loaded = load_image(tmp_path / "in.jpg")
    assert loaded.mode == "CMYK" and loaded.rgb.shape == (16, 16, 3) and loaded.icc_profile is None
    assert np.allclose(loaded.rgb.mean(axis=(0, 1)), [1, 0, 0], atol=0.05)


def test_exif_orientation_applied_and_reset_on_save(tmp_path):
    stored = np.zeros((16, 32, 3), np.uint8)  # 32 wide, 16 high; red block in the stored top-left corner
    stored[..., 2] = 255
    stored[:8, :8] = (255, 0, 0)
    Image.fromarray(stored).save(tmp_path / "in.jpg", quality=95, exif=make_exif(orientation=6))
    loaded = load_image(tmp_path / "in.jpg")
    assert loaded.rgb.shape == (32, 16, 3)  # rotated 90 degrees clockwise: portrait
    assert loaded.rgb[2:6, -6:-2, 0].min() > 0.9 and loaded.rgb[2:6, 2:6, 0].max() < 0.1  # red now top-right
    assert loaded.rgb[-6:-2, -6:-2, 0].max() < 0.1

    out = save_image(tmp_path / "out.jpg", loaded.rgb, exif=loaded.exif)
    with Image.open(out) as im:
        assert_exif_kept(im.getexif())
    assert load_image(out).rgb.shape == (32, 16, 3)  # not rotated a second time


def test_orientation_reset_patches_in_place():
    original = make_exif(orientation=6)
    reset = imageio.exif_with_orientation_reset(original)
    assert len(reset) == len(original) and sum(a != b for a, b in zip(reset, original)) == 1  # maker notes safe
    exif = Image.Exif()
    exif.load(reset)
    assert_exif_kept(exif)
    assert imageio.exif_with_orientation_reset(original[6:]) == reset  # with or without the "Exif\0\0" header


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif", ".webp"])
@pytest.mark.parametrize("declared_width", [40, 70000])  # stored as SHORT, and as LONG
def test_exif_pixel_size_says_the_saved_size(tmp_path, ext, declared_width):
    """Camera EXIF gives the photo's size; after an x4 restore (and turning it upright) it must give the new one."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769).update({0x9003: DATE, 0xA002: declared_width, 0xA003: 30})
    Image.new("RGB", (40, 30)).save(tmp_path / "camera.jpg", exif=exif.tobytes())
    upright = load_image(tmp_path / "camera.jpg")
    assert (upright.width, upright.height) == (30, 40)
    out = save_image(tmp_path / f"x4{ext}", np.zeros((160, 120, 3), np.float32), exif=upright.exif)
    with Image.open(out) as im:
        saved = im.getexif().get_ifd(0x8769)
    assert (saved[0xA002], saved[0xA003], saved[0x9003]) == (120, 160, DATE)


XMP = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
       b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
       b'xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmp:Rating="4" '
       b'tiff:Orientation="6" exif:PixelXDimension="40"><exif:PixelYDimension>30</exif:PixelYDimension>'
       b'<dc:subject><rdf:Bag><rdf:li>Caf\xc3\xa9 at dusk</rdf:li></rdf:Bag></dc:subject></rdf:Description>'
       b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


@pytest.mark.parametrize("ext,bits", [(".jpg", 8), (".png", 8), (".png", 16), (".tif", 8), (".tif", 16),
                                      (".webp", 8)])
def test_xmp_keywords_and_rating_survive_with_orientation_and_size_made_true(tmp_path, ext, bits):
    """Lightroom and phones keep keywords, ratings and captions in XMP; its orientation and size must describe
    the saved pixels, or an Adobe reader turns the upright result a second time."""
    Image.new("RGB", (40, 30)).save(tmp_path / "camera.jpg", exif=make_exif(orientation=6), xmp=XMP)
    upright = load_image(tmp_path / "camera.jpg")
    assert b'tiff:Orientation="1"' in upright.xmp and b'exif:PixelXDimension="30"' in upright.xmp
    out = save_image(tmp_path / f"x4{ext}", np.zeros((160, 120, 3), np.float32), bit_depth=bits, exif=upright.exif,
                     xmp=upright.xmp)
    with Image.open(out) as im:
        saved = im.info["xmp"]
    assert saved == XMP.replace(b'Orientation="6"', b'Orientation="1"').replace(
        b'PixelXDimension="40"', b'PixelXDimension="120"').replace(b">30<", b">160<")
    assert load_image(out).xmp == saved


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow was built without libavif")
def test_avif_photos_are_found_in_folders_and_load_upright_with_their_metadata(tmp_path, srgb):
    """Phones and browsers save AVIF; its rotation (irot/imir, which Pillow reports as EXIF orientation) applies."""
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:8, :8] = 255  # white block in the stored top-left corner
    Image.fromarray(stored).save(tmp_path / "phone.avif", quality=95, exif=make_exif(orientation=6), xmp=XMP,
                                 icc_profile=srgb)
    assert collect_inputs([tmp_path]) == [(tmp_path / "phone.avif", Path("phone.avif"))]
    loaded = load_image(tmp_path / "phone.avif")
    assert loaded.format == "AVIF" and loaded.rgb.shape == (32, 16, 3)
    assert loaded.rgb[2:6, -6:-2].min() > 0.8 and loaded.rgb[2:6, 2:6].max() < 0.2  # the block now top-right
    assert loaded.icc_profile == srgb and b'tiff:Orientation="1"' in loaded.xmp
    exif = Image.Exif()
    exif.load(loaded.exif)
    assert_exif_kept(exif)


def test_xmp_too_large_for_a_jpeg_is_left_out_of_it_not_the_save_refused(tmp_path):
    xmp = XMP.replace(b"Caf", b"x" * 70000)
    jpeg = save_image(tmp_path / "out.jpg", np.zeros((8, 8, 3)), xmp=xmp)
    png = save_image(tmp_path / "out.png", np.zeros((8, 8, 3)), xmp=xmp)
    assert load_image(jpeg).xmp is None and b"x" * 70000 + "é at dusk".encode() in load_image(png).xmp


def test_a_pixel_size_its_exif_fields_cannot_hold_leaves_the_exif_as_it_was():
    exif = Image.Exif()
    exif.get_ifd(0x8769).update({0x9003: DATE, 0xA002: 40, 0xA003: 30})  # SHORTs
    original = exif.tobytes()
    assert imageio.exif.exif_with_pixel_size(original, 70000, 120) == original  # not half of the pair either
    assert imageio.exif.exif_with_pixel_size(original[:40], 120, 160) == original[:40]  # cut short: as it was


def write_with_orientation(path, stored: np.ndarray, orientation: int) -> None:
    """A file whose EXIF says `orientation`; 16-bit ones through the module's own encoders (nothing else can)."""
    exif = make_exif(orientation)
    if stored.dtype == np.uint8:
        Image.fromarray(stored).save(path, exif=exif)
    else:
        encode = writing._encode_png16 if path.suffix == ".png" else writing._encode_tiff
        path.write_bytes(encode(stored, writing._Carried(exif=exif)))


@pytest.mark.parametrize("ext,bits", [(".png", 8), (".tif", 8), (".png", 16), (".tif", 16)])
def test_every_orientation_is_applied_once_as_pillow_does(tmp_path, ext, bits):
    stored8 = (np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 13)
    stored = stored8 if bits == 8 else stored8.astype(np.uint16) * 257
    for orientation in range(1, 9):
        reference = Image.fromarray(stored8)
        reference.info["exif"] = make_exif(orientation)
        path = tmp_path / f"o{orientation}{ext}"
        write_with_orientation(path, stored, orientation)
        loaded = load_image(path)
        assert loaded.bit_depth == bits
        assert np.array_equal(codes(loaded.rgb, 8), np.asarray(ImageOps.exif_transpose(reference))), orientation


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif"])
def test_icc_and_exif_survive_save(tmp_path, rng, srgb, ext):
    rgb = rng.random((8, 8, 3), dtype=np.float32)
    out = save_image(tmp_path / f"out{ext}", rgb, icc_profile=srgb, exif=make_exif(orientation=3))
    with Image.open(out) as im:
        assert im.info["icc_profile"] == srgb
        assert_exif_kept(im.getexif())
    loaded = load_image(out)
    assert loaded.icc_profile == srgb and loaded.exif.startswith(b"Exif\x00\x00")
    exif = Image.Exif()
    exif.load(loaded.exif)
    assert_exif_kept(exif)


def test_icc_for_other_colour_space_is_not_written(tmp_path, rng, srgb):
    out = save_image(tmp_path / "grey.png", rng.random((4, 4, 3)), grey=True, icc_profile=srgb)
    assert "icc_profile" not in Image.open(out).info


@pytest.mark.parametrize("quality", [20, 50, 75, 95])
def test_jpeg_quality_estimate(tmp_path, rng, quality):
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "q.jpg", quality=quality)
    assert abs(estimate_jpeg_quality(tmp_path / "q.jpg") - quality) <= 2
    assert abs(load_image(tmp_path / "q.jpg").jpeg_quality - quality) <= 2


def test_jpeg_quality_is_none_for_other_formats(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    assert estimate_jpeg_quality(tmp_path / "a.png") is None
    assert load_image(tmp_path / "a.png").jpeg_quality is None


def noise(rng, ext: str) -> bytes:
    buffer = io.BytesIO()
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG" if ext == ".jpg" else "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["empty", "text", "truncated_jpg", "truncated_png", "png_cut_in_its_size", "bomb",
                                  "missing", "folder"])
def test_bad_files_raise_one_line_image_error(tmp_path, rng, kind):
    max_pixels = imageio.DEFAULT_MAX_PIXELS
    path = tmp_path / {"truncated_jpg": "bad_photo.jpg", "folder": "a_folder.png"}.get(kind, f"bad_{kind}.png")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a picture\n")
    elif kind.startswith("truncated"):
        data = noise(rng, path.suffix)
        path.write_bytes(data[: len(data) // 2])
    elif kind == "png_cut_in_its_size":  # found by a fuzz run: the header's width and height cut short
        path.write_bytes(noise(rng, ".png")[:23])
    elif kind == "bomb":
        path.write_bytes(noise(rng, ".png")[:200])  # header intact, pixels unusable: refused before decoding
        max_pixels = 64 * 64 - 1
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(ImageError) as caught:
        load_image(path, max_pixels=max_pixels)
    message = str(caught.value)
    assert path.name in message and "\n" not in message and caught.value.path == path
    assert str(pickle.loads(pickle.dumps(caught.value))) == message  # survives a process pool
    if kind == "bomb":
        assert "64 x 64" in message and "limit" in message


def test_a_heic_photo_is_refused_with_what_to_do_instead(tmp_path):
    """HEIC is not read (README: a decoder that crashed on damaged files); a phone user is told how to get JPEGs."""
    photo = tmp_path / "IMG_0001.HEIC"
    photo.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200))
    with pytest.raises(ImageError, match="HEIC photos are not read yet: export it as JPEG .*Most Compatible"):
        load_image(photo)


def test_save_never_overwrites_unless_asked_and_never_an_input(tmp_path, rng):
    rgb = rng.random((4, 4, 3), dtype=np.float32)
    existing = tmp_path / "existing.png"
    Image.new("RGB", (2, 2)).save(existing)
    before = existing.read_bytes()
    with pytest.raises(ImageError, match="already exists"):
        save_image(existing, rgb)
    assert existing.read_bytes() == before
    save_image(existing, rgb, overwrite=True)
    assert Image.open(existing).size == (4, 4)

    original = tmp_path / "original.png"
    Image.new("RGB", (2, 2), "red").save(original)
    before = original.read_bytes()
    for protected in ([original], [str(tmp_path / "." / "original.png")]):
        with pytest.raises(ImageError, match="input"):
            save_image(original, rgb, overwrite=True, protect=protected)
    load_image(original)  # a file that was read is protected even when the caller forgets to say so
    with pytest.raises(ImageError, match="input"):
        save_image(original, rgb, overwrite=True)
    assert original.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.png", "original.png"]


@pytest.mark.parametrize("name,rgb", [("out.bmp", np.zeros((2, 2, 3))), ("out.png", np.full((2, 2, 3), np.nan))])
def test_failed_save_leaves_nothing_behind(tmp_path, name, rgb):
    with pytest.raises(ImageError) as caught:
        save_image(tmp_path / "new_folder" / name, rgb)
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_save_creates_folders_and_returns_path(tmp_path):
    out = save_image(tmp_path / "a" / "b" / "out.jpg", np.ones((2, 2, 3)))
    assert out == tmp_path / "a" / "b" / "out.jpg" and [p.name for p in out.parent.iterdir()] == ["out.jpg"]


@pytest.mark.parametrize("bits,ext", [(8, ".png"), (16, ".png"), (16, ".tif")])
def test_quantisation_rounds_and_clips(tmp_path, bits, ext):
    top = 2 ** bits - 1
    wanted = np.array([[0, 1, 2, 100, top - 1, top, top, 0]], dtype=np.int64)
    values = np.array([[-0.3, 0.999, 2.4, 99.6, top - 0.999, top + 0.4, top * 3, 0.45]]) / top
    out = save_image(tmp_path / f"out{ext}", np.repeat(values[..., None], 3, axis=2), bit_depth=bits)
    assert np.array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., 0], wanted)


def forged_jpeg(width: int, height: int) -> bytes:
    """A real 16 x 16 JPEG whose header is changed to declare width x height (data that cannot fill it)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    at = 2
    while data[at + 1] != 0xC0:  # walk the markers to the frame header
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    data[at + 5:at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_a_jpeg_too_small_for_its_declared_size_is_refused_before_decoding(tmp_path, monkeypatch):
    forged = tmp_path / "forged.jpg"
    forged.write_bytes(forged_jpeg(9000, 9000))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(ImageError, match=r"forged.jpg: file is \d+ bytes, too little data for a 9000 x 9000 JPEG"):
        load_image(forged)


def test_real_jpegs_of_flat_colour_hold_enough_data(tmp_path):
    """The bound (a bit per 8 x 8 block) is below what an encoder can write: flat grey, heaviest compression."""
    for mode, progressive in (("L", False), ("RGB", True)):
        path = tmp_path / f"flat-{mode}.jpg"
        Image.new(mode, (1024, 768), 128).save(path, quality=1, progressive=progressive, optimize=True)
        assert load_image(path).width == 1024


def animated(tmp_path, ext: str):
    path = tmp_path / f"animated{ext}"
    frames = [Image.new("RGB", (16, 16), (i * 80, 0, 0)) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


@pytest.mark.parametrize("ext", [".gif", ".webp", ".png", ".tiff"] + ([".avif"] if features.check("avif") else []))
def test_animations_and_multi_page_files_are_refused_not_cut_to_their_first_frame(tmp_path, ext):
    path = animated(tmp_path, ext)
    with pytest.raises(ImageError, match=f"{path.name}: holds 3 frames"):
        load_image(path)


def test_messages_of_the_decoding_libraries_stay_off_the_terminal(tmp_path, capfd):
    """libpng (through OpenCV, for 16-bit PNG) prints its own error; it goes into the file's one line instead."""
    ok, encoded = cv2.imencode(".png", np.full((32, 32, 3), 40000, np.uint16))
    data = bytearray(encoded.tobytes())
    data[data.find(b"IDAT") + 4] ^= 0xFF  # the first byte of the compressed pixels
    damaged = tmp_path / "damaged16.png"
    damaged.write_bytes(data)
    with pytest.raises(ImageError, match="damaged16.png: truncated or corrupt 16-bit image data \\(libpng"):
        load_image(damaged)
    assert capfd.readouterr().err == ""


def test_images_load_in_a_windowed_app_without_stderr(tmp_path, rng, monkeypatch):
    """A packaged GUI on Windows has no stderr at all (sys.stderr None, no descriptor 2)."""
    def no_descriptor(fd):
        raise OSError(9, "Bad file descriptor")

    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    monkeypatch.setattr("sys.stderr", None)
    monkeypatch.setattr("edpn_core.inference.imageio.reading.os.dup", no_descriptor)
    assert load_image(path).width == 8


@pytest.mark.parametrize("key", sorted(SAVE_FORMATS))
def test_each_save_format_keeps_what_its_table_entry_says(tmp_path, key):
    """SAVE_FORMATS is the one description of the save formats that the CLI, batches and the app read."""
    spec = SAVE_FORMATS[key]
    rgb = np.random.default_rng(0).random((12, 16, 3)).astype(np.float32)
    path = save_image(tmp_path / f"x{spec.extension}", rgb, alpha=np.full((12, 16), 0.5, np.float32), bit_depth=16)
    loaded = load_image(path)
    assert loaded.format == spec.pillow
    assert (loaded.alpha is not None) == spec.alpha and (loaded.bit_depth == 16) == spec.sixteen_bit
    assert all(save_format_named(name) == key for name in (key, spec.extension, spec.pillow, *spec.other_names))


@pytest.mark.parametrize("key", sorted(SAVE_FORMATS))
def test_sizes_a_format_cannot_hold_are_refused_with_a_way_out(tmp_path, key):
    """libjpeg stops at 65500 px a side and libwebp at 16383; their own errors ("broken data stream") say neither
    what went wrong nor what to do."""
    spec = SAVE_FORMATS[key]
    side = spec.max_side or 65500
    assert load_image(save_image(tmp_path / f"fits{spec.extension}", np.zeros((1, side, 3), np.uint8))).width == side
    too_tall = tmp_path / f"tall{spec.extension}"
    if spec.max_side is None:
        assert load_image(save_image(too_tall, np.zeros((side + 1, 1, 3), np.uint8))).height == side + 1
    else:
        with pytest.raises(ImageError, match=rf"1 x {side + 1} px is more than {spec.label} holds \({side} px a "
                                             r"side\); save as PNG or TIFF"):
            save_image(too_tall, np.zeros((side + 1, 1, 3), np.uint8))
        assert not too_tall.exists()


def png_with_text(path: Path, stored: np.ndarray) -> dict[str, str]:
    """A generated picture's PNG as Stable Diffusion tools, Lightroom and ImageMagick leave them: settings in tEXt,
    a workflow in zTXt, a translated title in iTXt, XMP, a hex copy of the EXIF, a date after the image data.
    Returns the text a restore keeps."""
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("parameters", "a cat on a mat\nSteps: 20, Sampler: Euler a, Size: 512x512")
    chunks.add_text("workflow", '{"3": {"class_type": "KSampler"}}' * 200, zip=True)
    chunks.add_itxt("Title", "Café at dusk ☕", lang="fr", tkey="Titre")
    chunks.add_itxt("XML:com.adobe.xmp", XMP)
    chunks.add_text("Raw profile type exif", "\nexif\n      10\n457869660000")
    png = cv2.imencode(".png", stored)[1].tobytes()
    ihdr_end = 33
    before = b"".join(writing._png_chunk(kind, payload) for kind, payload, *_ in chunks.chunks)
    after = writing._png_chunk(b"tEXt", b"date:modify\x002026-12-06T10:00:00")
    path.write_bytes(png[:ihdr_end] + before + png[ihdr_end:-12] + after + png[-12:])
    return {"parameters": "a cat on a mat\nSteps: 20, Sampler: Euler a, Size: 512x512",
            "workflow": '{"3": {"class_type": "KSampler"}}' * 200, "Title": "Café at dusk ☕",
            "date:modify": "2026-12-06T10:00:00"}


@pytest.mark.parametrize("bits", [8, 16])
def test_png_text_such_as_a_generators_settings_survives_a_restore_to_png(tmp_path, bits):
    """ComfyUI and AUTOMATIC1111 read their prompt and workflow back from the PNG's text chunks (plain tEXt only,
    in ComfyUI's browser reader): an upscaled picture that loses them can no longer be remade."""
    stored = np.full((6, 8, 3), 90, np.uint8) if bits == 8 else np.full((6, 8, 3), 23130, np.uint16)
    text = png_with_text(tmp_path / "generated.png", stored)
    loaded = load_image(tmp_path / "generated.png")
    expected = text if bits == 8 else {k: v for k, v in text.items() if k != "date:modify"}  # 16-bit: before IDAT
    assert loaded.text == expected and loaded.xmp is not None
    assert loaded.text["Title"].lang == "fr" and loaded.text["Title"].tkey == "Titre"
    out = save_image(tmp_path / "x4.png", np.zeros((24, 32, 3)), bit_depth=bits, text=loaded.text, xmp=loaded.xmp)
    with Image.open(out) as im:
        im.load()
        assert im.text == {"XML:com.adobe.xmp": im.info["xmp"].decode(), **expected}  # the XMP once, not twice
        assert im.text["Title"].lang == "fr" and im.text["Title"].tkey == "Titre"
    kinds = [out.read_bytes().count(kind) for kind in (b"tEXt", b"zTXt", b"iTXt")]
    assert kinds == [len(expected) - 1, 0, 2]  # every value plain; the title and the XMP international
    assert load_image(out).text == expected


def test_comments_move_between_jpeg_gif_and_png_and_other_text_stays_in_png(tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "phone.jpg", comment="Noël ✓".encode())
    Image.new("P", (8, 6)).save(tmp_path / "old.gif", comment=b"scanned in 1998 \xe9")  # not UTF-8: Latin-1
    assert load_image(tmp_path / "phone.jpg").text == {"Comment": "Noël ✓"}
    assert load_image(tmp_path / "old.gif").text == {"Comment": "scanned in 1998 é"}
    text = {"Comment": "Noël ✓", "parameters": "a cat"}
    for ext, kept in ((".png", text), (".jpg", {"Comment": "Noël ✓"}), (".webp", {}), (".tif", {})):
        assert load_image(save_image(tmp_path / f"out{ext}", np.zeros((6, 8, 3)), text=text)).text == kept
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.info["comment"] == "Noël ✓".encode()


def test_a_comment_too_long_for_a_jpeg_is_left_out_of_it_not_the_save_refused(tmp_path):
    text = {"Comment": "x" * 70000}
    assert load_image(save_image(tmp_path / "out.jpg", np.zeros((8, 8, 3)), text=text)).text == {}
    assert load_image(save_image(tmp_path / "out.png", np.zeros((8, 8, 3)), text=text)).text == text


def iptc_records(caption: str) -> bytes:
    """IPTC-IIM: the record version, a caption, two keywords and a byline (dataset 2:n, big-endian length)."""
    def record(dataset: int, value: bytes) -> bytes:
        return b"\x1c\x02" + bytes([dataset]) + len(value).to_bytes(2, "big") + value
    return (record(0, b"\x00\x04") + record(120, caption.encode()) + record(25, b"cat") + record(25, b"mat")
            + record(80, b"Anna Nowak"))


def photoshop_app13(*resources: tuple[int, bytes]) -> bytes:
    """An APP13 segment as Photoshop writes it: named and unnamed 8BIM resources, each padded to even length."""
    payload = b"Photoshop 3.0\x00"
    for code, data in resources:
        payload += b"8BIM" + code.to_bytes(2, "big") + b"\x03abc" + len(data).to_bytes(4, "big") + data
        payload += b"\x00" * (len(data) & 1)
    return b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload


@pytest.mark.parametrize("ext,bits", [(".jpg", 8), (".tif", 8), (".tif", 16), (".png", 8), (".webp", 8)])
def test_iptc_caption_keywords_and_byline_survive_in_jpeg_and_tiff(tmp_path, ext, bits):
    """News agencies and Photo Mechanic read IPTC-IIM, not XMP: a restored press photo must keep its caption."""
    from PIL import IptcImagePlugin

    records = iptc_records("Café at dusk.")  # odd length: the resource is padded
    resolution = bytes.fromhex("004800000001000100480000000100010000")
    Image.new("RGB", (8, 6)).save(tmp_path / "press.jpg", extra=photoshop_app13((0x03ED, resolution),
                                                                                 (0x0404, records)))
    loaded = load_image(tmp_path / "press.jpg")
    assert loaded.iptc == records
    out = save_image(tmp_path / f"out{ext}", np.zeros((24, 32, 3)), bit_depth=bits, iptc=loaded.iptc)
    with Image.open(out) as im:
        found = IptcImagePlugin.getiptcinfo(im)
    if ext in (".jpg", ".tif"):
        assert found[(2, 120)] == "Café at dusk.".encode() and found[(2, 25)] == [b"cat", b"mat"]
        assert load_image(out).iptc == records
    else:
        assert found is None and load_image(out).iptc is None


def test_iptc_typed_as_longs_in_a_photoshop_tiff_reaches_a_jpeg_whole(tmp_path):
    from PIL import IptcImagePlugin

    records = iptc_records("Harbour at sunset")  # a multiple of 4 bytes, as Photoshop pads it
    assert len(records) % 4 == 0
    Image.new("RGB", (8, 6)).save(tmp_path / "scan.tif", tiffinfo={33723: records})  # UNDEFINED, len(records)
    undefined = b"\xbb\x83\x07\x00" + len(records).to_bytes(4, "little")  # the IFD entry: tag, type, count
    longs = b"\xbb\x83\x04\x00" + (len(records) // 4).to_bytes(4, "little")
    tiff = (tmp_path / "scan.tif").read_bytes()
    assert tiff.count(undefined) == 1
    (tmp_path / "scan.tif").write_bytes(tiff.replace(undefined, longs))
    out = save_image(tmp_path / "out.jpg", np.zeros((6, 8, 3)), iptc=load_image(tmp_path / "scan.tif").iptc)
    with Image.open(out) as im:
        assert IptcImagePlugin.getiptcinfo(im)[(2, 120)] == b"Harbour at sunset"


def test_iptc_too_large_for_a_jpeg_is_left_out_of_it_not_the_save_refused(tmp_path):
    records = iptc_records("x" * 60000) + iptc_records("y" * 6000)
    assert load_image(save_image(tmp_path / "out.jpg", np.zeros((8, 8, 3)), iptc=records)).iptc is None
    assert load_image(save_image(tmp_path / "out.tif", np.zeros((8, 8, 3)), iptc=records)).iptc == records


@pytest.mark.parametrize("xmp_size", [1000, 70000])
def test_what_a_save_leaves_out_is_named_as_the_saved_file_shows(tmp_path, xmp_size):
    """The app names what a save to another format lost; the names must match what the file then lacks."""
    Image.new("RGB", (8, 6)).save(tmp_path / "press.png")
    photo = dataclasses.replace(load_image(tmp_path / "press.png"), xmp=XMP.replace(b"Caf", b"x" * xmp_size),
                                iptc=iptc_records("Dusk"), text={"Comment": "for Anna", "parameters": "a cat"})
    for ext, pillow in ((".jpg", "JPEG"), (".png", "PNG"), (".webp", "WEBP"), (".tif", "TIFF")):
        saved = load_image(save_image(tmp_path / f"out{ext}", photo.rgb, xmp=photo.xmp, iptc=photo.iptc,
                                      text=photo.text))
        lost = (["XMP"] if saved.xmp is None else []) + (["IPTC"] if saved.iptc is None else [])  # had both
        missing_text = [key for key in photo.text if key not in saved.text]
        named = metadata_left_out(pillow, xmp=photo.xmp, iptc=photo.iptc, text=photo.text)
        assert named == lost + (["text " + ", ".join(missing_text)] if missing_text else [])
    assert metadata_left_out("JPEG", xmp=photo.xmp, text=photo.text) == (["XMP"] if xmp_size > 65000 else []) + [
        "text parameters"]
    assert metadata_left_out("TIFF", iptc=photo.iptc, text=photo.text) == ["text Comment, parameters"]


@pytest.mark.parametrize("large_tag,left_out", [(0x927C, "EXIF maker note"), (0x9286, "EXIF")])
def test_exif_too_large_for_a_jpeg_loses_its_maker_note_or_itself_not_the_save(tmp_path, large_tag, left_out):
    """A raw converter's TIFF or PNG can carry more EXIF than a JPEG's segment holds (a 70 KB maker note, a long
    user comment): the JPEG keeps what fits, the date, camera and GPS if the maker note was the bulk."""
    exif = Image.Exif()
    exif.load(make_exif())
    exif.get_ifd(0x8769)[large_tag] = b"M" * 70000
    Image.new("RGB", (8, 6)).save(tmp_path / "raw.png", exif=exif.tobytes())
    photo = load_image(tmp_path / "raw.png")
    assert metadata_left_out("JPEG", exif=photo.exif) == [left_out] and metadata_left_out("PNG", exif=photo.exif) == []
    jpeg = save_image(tmp_path / "out.jpg", photo.rgb, exif=photo.exif)
    png = save_image(tmp_path / "out.png", photo.rgb, exif=photo.exif)
    with Image.open(jpeg) as im:
        kept = im.getexif()
    if left_out == "EXIF":
        assert len(kept) == 0
    else:
        assert_exif_kept(kept)
        assert kept[0x010F] == "Test camera" and large_tag not in kept.get_ifd(0x8769)
    with Image.open(png) as im:
        assert im.getexif().get_ifd(0x8769)[large_tag] == b"M" * 70000


def test_print_resolution_is_read_turned_with_the_pixels_and_written_back(tmp_path):
    stored = np.zeros((6, 8, 3), np.uint8)
    Image.fromarray(stored).save(tmp_path / "jfif.jpg", dpi=(300, 200), exif=make_exif(orientation=6))
    camera = Image.Exif()
    camera[0x011A], camera[0x011B], camera[0x0128] = 72, 72, 2  # a camera's EXIF, no JFIF density
    Image.fromarray(stored).save(tmp_path / "camera.jpg", exif=camera.tobytes())
    Image.fromarray(stored).save(tmp_path / "dated.jpg", exif=make_exif())  # no resolution (Pillow says 72)
    Image.fromarray(stored).save(tmp_path / "scan.png", dpi=(600, 600))
    Image.fromarray(stored).save(tmp_path / "plain.png")
    names = ("jfif.jpg", "camera.jpg", "dated.jpg", "scan.png", "plain.png")
    resolutions = {name: load_image(tmp_path / name).dpi for name in names}
    assert resolutions["dated.jpg"] is None
    assert resolutions["jfif.jpg"] == (200, 300)  # turned upright: across is what was down
    assert resolutions["camera.jpg"] == (72, 72) and resolutions["plain.png"] is None
    assert resolutions["scan.png"] == pytest.approx((600, 600), abs=0.01)
    for ext, bits, written in ((".png", 8, True), (".png", 16, True), (".jpg", 8, True), (".tif", 8, True),
                               (".tif", 16, True), (".webp", 8, False)):
        out = save_image(tmp_path / f"out{bits}{ext}", np.zeros((8, 6, 3)), bit_depth=bits, dpi=(1200.0, 800.0))
        with Image.open(out) as im:
            assert (tuple(round(value) for value in im.info["dpi"]) if written else im.info.get("dpi")) == (
                (1200, 800) if written else None)
    with pytest.raises(ValueError, match="dpi"):
        save_image(tmp_path / "bad.png", np.zeros((8, 6, 3)), dpi=(0, 300))
