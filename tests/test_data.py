import io
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import edpn_core.training.photos
from edpn_core.cli import main
from edpn_core.training.data import (
    PairedFolderDataset,
    RedsDataset,
    SyntheticPairDataset,
    crop_and_augment,
    pair_folders,
    reds_pairs,
)
from edpn_core.training.degradations import DegradationConfig, imresize
from edpn_core.training.photos import (
    PhotoSource,
    QtResources,
    arrange_split,
    jpeg_streams,
    largest_jpeg,
    license_for_file,
    pack_photos,
    parse_copyright,
    split_photos,
    stanza_for_file,
)
from edpn_core.training.photos.fetch import _collect
from edpn_core.training.photos.rcc import COMPRESSED_ZLIB, COMPRESSED_ZSTD, DIRECTORY


def _smooth(h, w, seed):
    """A smooth, asymmetric test picture (so a flip or rotation is detectable)."""
    rng = np.random.default_rng(seed)
    img = imresize(rng.random((h // 8 + 1, w // 8 + 1, 3)).astype(np.float32), 8)[:h, :w]
    ramp = (np.linspace(0, 0.3, w, dtype=np.float32)[None, :, None]
            + np.linspace(0, 0.2, h, dtype=np.float32)[:, None, None])
    return np.clip(0.7 * img + ramp, 0, 1)


def _save(img, path, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)).save(path, **kwargs)


def _numpy(t):
    return t.numpy().transpose(1, 2, 0)


NO_BLUR = DegradationConfig(no_blur_prob=1.0)


@pytest.fixture
def photo_dir(tmp_path):
    folder = tmp_path / "photos"
    for i in range(2):
        _save(_smooth(96, 120, i), folder / f"p{i}.png")
    return folder


# ------------------------------------------------------------------------------------------- synthetic pairs
def test_synthetic_items_have_right_shapes_and_are_deterministic(photo_dir):
    ds = SyntheticPairDataset(photo_dir, "sr", lq_patch=8, seed=3, length=5)
    assert len(ds) == 5
    item = ds[3]
    assert item["lq"].shape == (3, 8, 8) and item["gt"].shape == (3, 32, 32)
    assert item["lq"].dtype == torch.float32 and item["name"] == "p1_000003"
    again = SyntheticPairDataset(photo_dir, "sr", lq_patch=8, seed=3, length=5)[3]
    assert torch.equal(item["lq"], again["lq"]) and torch.equal(item["gt"], again["gt"])
    assert torch.equal(ds[3]["lq"], item["lq"])
    other = SyntheticPairDataset(photo_dir, "sr", lq_patch=8, seed=4, length=5)[3]
    assert not torch.equal(item["gt"], other["gt"])
    db = SyntheticPairDataset(photo_dir, "deblock", lq_patch=16)[0]
    assert db["lq"].shape == db["gt"].shape == (3, 16, 16)


def test_synthetic_lq_stays_the_bicubic_downscale_of_gt_through_augmentation(photo_dir):
    ds = SyntheticPairDataset([photo_dir / "p0.png"], "sr", lq_patch=12, degradation=NO_BLUR, length=8)
    mismatched = 0
    for i in range(len(ds)):
        lq, gt = _numpy(ds[i]["lq"]), _numpy(ds[i]["gt"])
        ours = np.clip(imresize(gt, 0.25), 0, 1)
        np.testing.assert_allclose(lq[2:-2, 2:-2], ours[2:-2, 2:-2], atol=0.6 / 255)
        mismatched += not np.allclose(np.rot90(lq)[2:-2, 2:-2], ours[2:-2, 2:-2], atol=0.6 / 255)
    assert mismatched == len(ds)  # the check would notice a misaligned pair


def test_synthetic_margin_gives_patch_edges_real_context(tmp_path):
    photo = _smooth(160, 160, 5)
    _save(photo, tmp_path / "big.png")
    photo = np.asarray(Image.open(tmp_path / "big.png")).astype(np.float32) / 255
    ds = SyntheticPairDataset(tmp_path / "big.png", "sr", lq_patch=8, degradation=NO_BLUR, augment=False, length=12)
    checked = 0
    for i in range(len(ds)):
        lq, gt = _numpy(ds[i]["lq"]), _numpy(ds[i]["gt"])
        ys, xs = np.nonzero(np.all(photo[:129, :129] == gt[0, 0], axis=-1))
        (top, left), = [(y, x) for y, x in zip(ys, xs) if np.array_equal(photo[y:y + 32, x:x + 32], gt)]
        if min(top, left) >= 4 * ds.margin and max(top, left) + 32 + 4 * ds.margin <= 160:
            phase_y, phase_x = top % 4, left % 4
            ref = np.clip(imresize(photo[phase_y:, phase_x:], 0.25), 0, 1)
            y0, x0 = (top - phase_y) // 4, (left - phase_x) // 4
            np.testing.assert_allclose(lq, ref[y0:y0 + 8, x0:x0 + 8], atol=0.6 / 255)  # edges included
            checked += 1
    assert checked >= 2


def test_synthetic_errors(tmp_path, photo_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        SyntheticPairDataset(tmp_path / "empty", "sr")
    with pytest.raises(ValueError, match="smaller"):
        SyntheticPairDataset(photo_dir, "sr", lq_patch=64)
    with pytest.raises(ValueError, match="task"):
        SyntheticPairDataset(photo_dir, "denoise")


def test_crop_and_augment_keeps_pairs_aligned_over_all_eight_transforms():
    gt = _smooth(64, 64, 7)
    lq = imresize(gt, 0.25)
    seen = set()
    for seed in range(40):
        lq_c, gt_c = crop_and_augment(lq, gt, 4, 12, np.random.default_rng(seed), augment=True)
        assert lq_c.shape == (12, 12, 3) and gt_c.shape == (48, 48, 3)
        np.testing.assert_allclose(imresize(gt_c, 0.25)[2:-2, 2:-2], lq_c[2:-2, 2:-2], atol=1e-4)
        for k in range(4):
            for flip in (False, True):
                cand = np.rot90(gt_c[:, ::-1] if flip else gt_c, -k)  # undo the transform
                if any(np.array_equal(cand, gt[y:y + 48, x:x + 48]) for y in range(0, 17, 4) for x in range(0, 17, 4)):
                    seen.add((k, flip))
    assert len(seen) == 8
    with pytest.raises(ValueError):
        crop_and_augment(lq, gt[:-4], 4, 12, np.random.default_rng(0), augment=False)


# ------------------------------------------------------------------------------------------- paired folders
def test_paired_folder_pairs_by_relative_stem_across_extensions(tmp_path):
    for name in ("a", "sub/b"):
        gt = _smooth(40, 48, len(name))
        _save(gt, tmp_path / "gt" / f"{name}.png")
        _save(imresize(gt, 0.25), tmp_path / "lq" / f"{name}.jpg", quality=98)
    pairs = pair_folders(tmp_path / "lq", tmp_path / "gt")
    assert [(k, lq.name, gt.name) for k, lq, gt in pairs] == [("a", "a.jpg", "a.png"), ("sub/b", "b.jpg", "b.png")]
    whole = PairedFolderDataset(tmp_path / "lq", tmp_path / "gt", "sr", augment=False)
    item = whole[1]
    assert item["name"] == "sub/b" and item["lq"].shape == (3, 10, 12) and item["gt"].shape == (3, 40, 48)
    crops = PairedFolderDataset(tmp_path / "lq", tmp_path / "gt", "sr", lq_patch=6, seed=1)
    first = crops[0]
    assert first["lq"].shape == (3, 6, 6) and first["gt"].shape == (3, 24, 24)
    assert torch.equal(first["gt"], crops[0]["gt"])
    mismatch = PairedFolderDataset(tmp_path / "gt", tmp_path / "gt", "sr")
    with pytest.raises(ValueError, match="gt is"):
        mismatch[0]


def test_paired_folder_reports_unmatched_files(tmp_path):
    img = _smooth(16, 16, 0)
    for name in ("x", "y"):
        _save(img, tmp_path / "gt" / f"{name}.png")
    for name in ("x", "z"):
        _save(img, tmp_path / "lq" / f"{name}.png")
    with pytest.raises(ValueError, match=r"only in .*lq \[z\].*only in .*gt \[y\]"):
        PairedFolderDataset(tmp_path / "lq", tmp_path / "gt", "deblock")


# ------------------------------------------------------------------------------------------- REDS
def _fake_reds(root, task, frames=4):
    for clip in ("000", "011"):
        for f in range(frames):
            value = (10 + 20 * f + (100 if clip == "011" else 0)) / 255
            gt = np.full((32, 40, 3), value, np.float32)
            _save(gt, root / "train_sharp" / clip / f"{f:08d}.png")
            if task == "sr":
                _save(gt[:8, :10], root / "train_blur_bicubic" / "X4" / clip / f"{f:08d}.png")
            else:
                _save(gt, root / "train_blur_jpeg" / clip / f"{f:08d}.jpg", quality=95)


@pytest.mark.parametrize("task", ["sr", "deblock"])
def test_reds_pairs_same_clip_and_frame(tmp_path, task):
    _fake_reds(tmp_path, task)
    pairs = reds_pairs(tmp_path, task)
    assert len(pairs) == 8
    for lq, gt in pairs:
        assert (lq.parent.name, lq.stem) == (gt.parent.name, gt.stem)
        assert gt.suffix == ".png" and lq.suffix == (".png" if task == "sr" else ".jpg")
    first_lq, first_gt = pairs[0]
    assert first_lq.stem == "00000000" and first_gt.stem == "00000000"  # not 00000002 as in the authors' code
    ds = RedsDataset(tmp_path, task, augment=False)
    for i in range(len(ds)):
        item = ds[i]
        assert abs(item["lq"].mean().item() - item["gt"].mean().item()) < 2 / 255
    assert ds[0]["name"] == "000/00000000"
    with pytest.raises(FileNotFoundError, match="REDS folder missing"):
        reds_pairs(tmp_path, task, split="val")


# ------------------------------------------------------------------------------------------- photos
COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: nature/Aqua.jpg
 nature/Leaf.jpg
Copyright: 2008 Photographer
License: CC-BY-SA-4.0
 Long licence text that is not the short name.

Files: 16.04/river_by_Someone.jpg
Copyright: 2018 Someone Else
License: CC0-1.0

Files: debian/*
Copyright: 2021 Packager
License: Expat

License: GPL-2+
 The GPL text.
"""


def test_licence_per_file_from_dep5():
    main, stanzas = parse_copyright(COPYRIGHT)
    assert main == "GPL-2+" and len(stanzas) == 4
    assert stanzas[1] == (["nature/Aqua.jpg", "nature/Leaf.jpg"], "CC-BY-SA-4.0")
    assert license_for_file(COPYRIGHT, "/usr/share/backgrounds/mate/nature/Leaf.jpg") == "CC-BY-SA-4.0"
    # Upstream folders that the package flattens are matched by file name.
    assert license_for_file(COPYRIGHT, "/usr/share/backgrounds/river_by_Someone.jpg") == "CC0-1.0"
    assert license_for_file(COPYRIGHT, "/usr/share/backgrounds/other.jpg") == "GPL-2+"
    no_wildcard = COPYRIGHT.replace("Files: *\n", "Files: src/*\n")
    assert license_for_file(no_wildcard, "/usr/share/x.jpg") == "GPL-2+"  # first stanza's licence as fallback
    with_header = "Format: x\nLicense: BSD-2-clause\n\n" + COPYRIGHT.split("\n\n", 1)[1]
    assert license_for_file(with_header, "/usr/share/debian/thing") == "Expat"
    assert parse_copyright(with_header)[0] == "BSD-2-clause"


GCOMPRIS_README = """Copyright: Someone, 2022
License: CC-BY-SA 4.0
Files:
drawing.svg

Copyright: Photographer
Source: https://commons.wikimedia.org/wiki/File:Lion.jpg
License: Public Domain
Files: lion.webp

Copyright: Another
License: CC-BY 2.0
Files:
europe/castle.webp
europe/bridge.webp
"""


def test_licence_from_an_upstream_readme_in_dep5_fields():
    lion = stanza_for_file(GCOMPRIS_README, "gcompris/src/activities/erase/resource/lion.webp")
    assert lion is not None and lion["license"] == "public-domain" and lion["copyright"] == "Photographer"
    assert lion["source"] == "https://commons.wikimedia.org/wiki/File:Lion.jpg"
    # File lists without indentation, and "CC-BY 2.0" spelt as DEP-5 short names are.
    assert license_for_file(GCOMPRIS_README, "resource/europe/bridge.webp") == "CC-BY-2.0"
    assert license_for_file(GCOMPRIS_README, "resource/drawing.svg") == "CC-BY-SA-4.0"
    assert stanza_for_file(GCOMPRIS_README, "resource/europe/tower.webp") is None
    assert stanza_for_file(COPYRIGHT, "/usr/share/x/river_by_Someone.jpg")["copyright"] == "2018 Someone Else"


def _rcc_bytes(files, version=3):
    """A Qt resource file as rcc writes it: files maps a path to (content, flags), folders are implied."""
    tree: dict = {}
    for path, item in files.items():
        *folders, name = path.split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = item
    names, payloads, nodes = b"", b"", []  # nodes: (name offset, flags, (count, first) or data offset)

    def name_offset(name):
        nonlocal names
        offset = len(names)
        encoded = name.encode("utf-16-be")
        names += struct.pack(">HI", len(name), 0) + encoded
        return offset

    def payload_offset(content, flags):
        nonlocal payloads
        if flags & COMPRESSED_ZSTD:
            import zstandard
            content = zstandard.ZstdCompressor().compress(content)
        elif flags & COMPRESSED_ZLIB:
            content = struct.pack(">I", len(content)) + zlib.compress(content)
        offset = len(payloads)
        payloads += struct.pack(">I", len(content)) + content
        return offset

    nodes.append([0, DIRECTORY, None])
    queue = [(0, tree)]
    while queue:  # breadth first, as rcc does: a folder's children are consecutive nodes
        index, folder = queue.pop(0)
        nodes[index][2] = (len(folder), len(nodes))
        for name, item in sorted(folder.items()):
            if isinstance(item, dict):
                queue.append((len(nodes), item))
                nodes.append([name_offset(name), DIRECTORY, None])
            else:
                nodes.append([name_offset(name), item[1], payload_offset(*item)])
    tree_bytes = b""
    for offset, flags, rest in nodes:
        node = struct.pack(">IH", offset, flags)
        node += struct.pack(">II", *rest) if flags & DIRECTORY else struct.pack(">HHI", 0, 0, rest)
        tree_bytes += node + (b"" if version == 1 else bytes(8))  # format 2 added a modification time
    header_size = 20 if version < 3 else 24
    tree_at = header_size
    payloads_at = tree_at + len(tree_bytes)
    names_at = payloads_at + len(payloads)
    header = b"qres" + struct.pack(">4I", version, tree_at, payloads_at, names_at)
    header += b"" if version < 3 else struct.pack(">I", 0)
    return header + tree_bytes + payloads + names


@pytest.mark.parametrize("version", [1, 3])
def test_rcc_reads_stored_zlib_and_zstd_entries(version):
    files = {"gcompris/activities/erase/README": (b"License: CC0-1.0" * 20, COMPRESSED_ZLIB),
             "gcompris/activities/erase/lion.webp": (b"\x00lion pixels" * 50, COMPRESSED_ZSTD),
             "gcompris/activities/erase/sub/\u00e9t\u00e9.txt": (b"stored as is", 0),
             "top.txt": (b"", 0)}
    archive = QtResources(_rcc_bytes(files, version))
    assert archive.paths() == sorted(files)
    for path, (content, _) in files.items():
        assert path in archive and archive.read(path) == content
    with pytest.raises(KeyError):
        archive.read("gcompris/activities/erase")


def test_rcc_refuses_damaged_files():
    blob = _rcc_bytes({"a/b.txt": (b"hello", COMPRESSED_ZLIB)})
    with pytest.raises(ValueError, match="not a Qt resource"):
        QtResources(b"PK\x03\x04" + blob[4:])
    with pytest.raises(ValueError, match="version"):
        QtResources(blob[:4] + struct.pack(">I", 9) + blob[8:])
    with pytest.raises(ValueError, match="past the end"):
        QtResources(blob[:-3])  # the last name is cut short
    looped = bytearray(blob)
    struct.pack_into(">II", looped, 24 + 22 + 6, 1, 1)  # folder "a" lists itself as its only child
    with pytest.raises(ValueError, match="loop"):
        QtResources(bytes(looped))


def _jpeg_bytes(size, seed, comment=b""):
    buffer = io.BytesIO()
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    img.save(buffer, format="JPEG", quality=90, comment=comment)
    return buffer.getvalue()


def test_largest_jpeg_found_in_an_eet_like_blob():
    small = _jpeg_bytes((16, 12), 0)
    big = _jpeg_bytes((48, 40), 1, comment=small)  # an embedded thumbnail whose EOI must not end the stream
    junk = np.random.default_rng(2).integers(0, 255, 300, dtype=np.uint8).tobytes().replace(b"\xff", b"\x00")
    blob = b"\x1e\xe7\xff\x1e" + junk + small + junk + big + junk + big[: len(big) // 2] + junk
    streams = jpeg_streams(blob)
    assert small in streams and big in streams
    best = largest_jpeg(blob)
    assert best == big
    with Image.open(io.BytesIO(best)) as img:
        assert img.size == (48, 40)
    assert largest_jpeg(junk) is None
    corrupt_big = big[:200] + b"\xff\xd9"  # well-formed markers but truncated scan: must not decode
    assert largest_jpeg(small + corrupt_big + junk) == small


def test_collect_halves_photos_names_them_and_records_licences(tmp_path):
    root = tmp_path / "root"
    (root / "usr/share/doc/demo").mkdir(parents=True)
    (root / "usr/share/doc/demo/copyright").write_text(COPYRIGHT)
    _save(_smooth(1001, 1100, 0), root / "usr/share/backgrounds/mate/nature/Leaf.jpg", quality=95)
    _save(_smooth(500, 600, 1), root / "usr/share/backgrounds/mate/nature/Tiny.jpg")
    dest = tmp_path / "out"
    dest.mkdir()
    source = PhotoSource("demo", ("usr/share/backgrounds/mate/nature/*.jpg",))
    entries = _collect(source, root, dest, set(), log=lambda _: None)
    assert entries == [{"file": "demo__Leaf.png", "source_package": "demo",
                        "original_path": "/usr/share/backgrounds/mate/nature/Leaf.jpg", "license": "CC-BY-SA-4.0",
                        "content": "close-ups", "original_size": [1100, 1001], "saved_size": [550, 500]}]
    with Image.open(dest / "demo__Leaf.png") as img:
        assert img.size == (550, 500)
    noted = PhotoSource("demo", ("usr/share/backgrounds/mate/nature/Leaf.jpg",), name_parent=0,
                        license_note="upstream says CC0-1.0")
    entries = _collect(noted, root, dest, {"demo__Leaf.png"}, log=lambda _: None)
    assert [(e["file"], e["license_note"]) for e in entries] == [("demo__nature.png", "upstream says CC0-1.0")]


def _webp_bytes(size, seed):
    buffer = io.BytesIO()
    Image.fromarray(np.rint(_smooth(size[1], size[0], seed) * 255).astype(np.uint8)).save(buffer, format="WEBP")
    return buffer.getvalue()


def test_collect_reads_photos_inside_qt_resources_with_the_licences_beside_them(tmp_path):
    resource = "gcompris/src/activities/explore/resource"
    files = {f"{resource}/README": (GCOMPRIS_README.encode(), COMPRESSED_ZLIB),
             f"{resource}/lion.webp": (_webp_bytes((1100, 600), 0), 0),
             f"{resource}/europe/castle.webp": (_webp_bytes((600, 520), 1), COMPRESSED_ZLIB),  # README above
             f"{resource}/europe/tower.webp": (_webp_bytes((600, 520), 2), 0),  # no licence names it
             f"{resource}/europe/bridge.webp": (_webp_bytes((600, 500), 3), 0),  # too narrow for a crop
             f"{resource}/drawing.webp": (_webp_bytes((600, 600), 4), 0)}
    root = tmp_path / "root"
    (root / "usr/share/game/rcc").mkdir(parents=True)
    (root / "usr/share/game/rcc/explore.rcc").write_bytes(_rcc_bytes(files))
    source = PhotoSource("game", ("usr/share/game/rcc/*.rcc",), rcc_entries=(f"{resource}/*.webp",
                                                                             f"{resource}/*/*.webp"),
                         exclude=("drawing",), min_pixels=300_000, content="animals",
                         content_of={"castle": "buildings"})
    dest = tmp_path / "out"
    dest.mkdir()
    said = []
    entries = _collect(source, root, dest, set(), log=said.append)
    assert [(e["file"], e["license"], e["content"], e["saved_size"]) for e in entries] == [
        ("game__explore__castle.png", "CC-BY-2.0", "buildings", [300, 260]),
        ("game__explore__lion.png", "public-domain", "animals", [550, 300])]
    lion = entries[1]
    assert lion["original_path"] == "/usr/share/game/rcc/explore.rcc"
    assert lion["path_in_archive"] == f"{resource}/lion.webp" and lion["license_file"] == f"{resource}/README"
    assert lion["copyright"] == "Photographer" and lion["source"].endswith("File:Lion.jpg")
    assert any("tower.webp: no README" in line for line in said)
    assert any("bridge.webp: 600x500" in line for line in said)
    with Image.open(dest / "game__explore__lion.png") as img:
        assert img.size == (550, 300)


def _tagged(counts):
    """Manifest entries from {(package, kind, short side): count}."""
    return [{"file": f"{package}__{kind}_{side}_{i}.png", "source_package": package, "content": kind,
             "saved_size": [side + 100, side]}
            for (package, kind, side), count in counts.items() for i in range(count)]


def test_split_photos_spans_every_kind_that_fits_each_set():
    manifest = _tagged({("wall", "landscapes", 800): 12, ("wall", "close-ups", 600): 12,
                        ("game", "animals", 540): 12, ("game", "buildings", 384): 10, ("game", "street", 384): 2,
                        ("album", "people", 300): 8, ("game", "underwater", 540): 4})
    kind = {e["file"]: e["content"] for e in manifest}
    side = {e["file"]: min(e["saved_size"]) for e in manifest}
    split = split_photos(manifest, 0.3, seed=3, pinned_report=())
    assert len(split.select) == 9 and len(split.report) == 9
    # select feeds training's 512 px validation crops, report edpn eval's 384 px ones.
    assert {kind[f] for f in split.select} == {"landscapes", "close-ups", "animals", "underwater"}
    assert min(side[f] for f in split.select) >= 512
    assert {kind[f] for f in split.report} == {"landscapes", "close-ups", "animals", "buildings", "street",
                                               "underwater"}
    assert min(side[f] for f in split.report) >= 384
    train_kinds = [kind[f] for f in split.train]
    assert train_kinds.count("people") == 8 and train_kinds.count("street") == 1  # half a rare kind stays
    assert train_kinds.count("underwater") == 2
    assert split_photos(list(reversed(manifest)), 0.3, seed=3, pinned_report=()) == split
    assert split_photos(manifest, 0.3, seed=4, pinned_report=()) != split
    only_small = _tagged({("album", "people", 300): 6})  # no photo fits: the held-out sets stay empty
    assert split_photos(only_small, 0.4, pinned_report=()) == (sorted(e["file"] for e in only_small), [], [], [])


def _manifest(photos_per_package):
    return [{"file": f"{package}__{i}.png", "source_package": package}
            for package, count in photos_per_package.items() for i in range(count)]


def _packages(files):
    return {name.split("__")[0] for name in files}


def test_split_photos_three_disjoint_sets_drawn_across_packages():
    manifest = _manifest({"a": 8, "b": 6, "c": 4, "d": 2, "e": 1})
    split = split_photos(manifest, 0.4, seed=1, pinned_report=())
    everything = split.train + split.select + split.report
    assert sorted(everything) == sorted(m["file"] for m in manifest) and len(set(everything)) == len(everything)
    assert len(split.select) == 4 and len(split.report) == 4
    assert len(_packages(split.select)) >= 3 and len(_packages(split.report)) >= 3
    assert _packages(split.train) == {"a", "b", "c", "d", "e"}  # every package keeps a photo for training
    assert split_photos(list(reversed(manifest)), 0.4, seed=1, pinned_report=()) == split
    assert split_photos(manifest, 0.4, seed=2, pinned_report=()) != split
    few = split_photos(manifest[:3], 0.01, pinned_report=())
    assert (len(few.train), len(few.select), len(few.report)) == (1, 1, 1)
    assert split_photos(manifest, 0.0).train == sorted(m["file"] for m in manifest)


def test_split_photos_keeps_pinned_photos_in_report():
    manifest = _manifest({"a": 6, "b": 6})
    pinned = ("a__0.png", "a__1.png", "b__0.png", "absent.png")
    split = split_photos(manifest, 0.2, pinned_report=pinned)
    assert split.report == ["a__0.png", "a__1.png", "b__0.png"] and len(split.select) == 1
    assert not set(split.select) & set(split.report) and len(split.train) == 8
    for seed in range(8):  # the photos drawn besides the pinned ones come from packages report lacks
        filled = split_photos(_manifest({"a": 6, "b": 6, "c": 6, "d": 6}), 0.4, seed,
                              pinned_report=("a__0.png", "a__1.png", "b__0.png"))
        assert len(filled.report) == 5 and _packages(filled.report) == {"a", "b", "c", "d"}
    two_pinned = split_photos(_manifest({"a": 3, "b": 2}), 0.4, pinned_report=("a__0.png", "b__0.png"))
    assert _packages(two_pinned.train) == {"a", "b"}  # b's other photo stays in training
    with pytest.raises(ValueError, match="pinned"):
        split_photos(manifest[:3], 0.2, pinned_report=[m["file"] for m in manifest[:3]])


def test_photos_that_are_not_sharp_are_set_aside_and_move_no_other_photo():
    manifest = _manifest({"a": 6, "b": 6, "c": 6})
    pinned = ("a__0.png", "b__0.png")
    before = split_photos(manifest, 0.4, seed=1, pinned_report=pinned, not_sharp=())
    after = split_photos(manifest, 0.4, seed=1, pinned_report=pinned, not_sharp=("b__0.png",))
    assert after.set_aside == ["b__0.png"]
    assert after.report == [name for name in before.report if name != "b__0.png"]  # pinned: drawn, then taken out
    assert (after.train, after.select) == (before.train, before.select)
    unpinned = split_photos(manifest, 0.4, seed=1, pinned_report=pinned, not_sharp=(before.train[0],))
    assert unpinned.set_aside == [before.train[0]]
    assert before.train[0] not in {*unpinned.train, *unpinned.select, *unpinned.report}
    assert len(unpinned.train) + len(unpinned.select) + len(unpinned.report) == len(manifest) - 1


def test_report_draws_no_photo_the_shipped_weights_were_trained_on():
    manifest = _tagged({("enlightenment-data", "landscapes", 800): 10, ("lxqt-themes", "landscapes", 800): 2,
                        ("game", "landscapes", 540): 10})
    manifest.append({"file": "lxqt-themes__beam.png", "source_package": "lxqt-themes", "content": "landscapes",
                     "saved_size": [1296, 972]})
    split = split_photos(manifest, 0.4, seed=1, pinned_report=())
    assert "lxqt-themes__beam.png" in split.report and len(split.report) == 5
    assert _packages(split.report) == {"game", "lxqt-themes"}
    assert "enlightenment-data" in _packages(split.select)  # select only picks checkpoints: it may


def _fake_fetch(dest, photos_per_package):
    """What fetch_photos leaves behind, without the network: small photos and their manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(photos_per_package)
    for i, entry in enumerate(manifest):
        _save(_smooth(64, 64, i), dest / entry["file"])
        entry["license"] = "CC0-1.0"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_arrange_split_moves_photos_into_their_folders_and_says_why_one_is_set_aside(tmp_path):
    _fake_fetch(tmp_path, {"a": 5, "b": 4})
    split = arrange_split(tmp_path, 0.25, pinned_report=(), not_sharp={"a__4.png": "motion blur across the frame"})
    assert [len(files) for files in split] == [6, 1, 1, 1] and split.set_aside == ["a__4.png"]
    aside, = json.loads((tmp_path / "set_aside" / "manifest.json").read_text())
    assert aside["not_sharp"] == "motion blur across the frame"
    for name, files in split._asdict().items():
        assert sorted(p.name for p in (tmp_path / name).glob("*.png")) == files
        recorded = json.loads((tmp_path / name / "manifest.json").read_text())
        assert sorted(e["file"] for e in recorded) == files and {e["split"] for e in recorded} == {name}
        assert {e["license"] for e in recorded} == {"CC0-1.0"}
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "manifest.json").exists()


def test_fetch_photos_command_splits_and_packs_training_photos_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(edpn_core.training.photos, "fetch_photos", lambda dest: _fake_fetch(dest, {"a": 5, "b": 5}))
    dest, pack = tmp_path / "photos", tmp_path / "pack"
    assert main(["data", "fetch-photos", str(dest), "--pack", str(pack), "--max-mib", "1"]) == 0
    held = {p.name for folder in ("select", "report") for p in (dest / folder).glob("*.png")}
    assert len(held) == 2 and len(list((dest / "train").glob("*.png"))) == 8
    crops = json.loads((pack / "manifest.json").read_text())["crops"]
    assert crops and not {c["source"] for c in crops} & held
    said = capsys.readouterr().out
    assert "8 training photos" in said and "select shows: untagged 1" in said


def test_pack_photos_respects_size_limit(tmp_path):
    src = tmp_path / "photos"
    for i in range(3):
        _save(_smooth(64, 96, i), src / f"p{i}.png")
    (src / "manifest.json").write_text(json.dumps([{"file": f"p{i}.png", "license": "CC0-1.0"} for i in range(3)]))
    crops = pack_photos(src, tmp_path / "pack", max_mib=0.06, patch=32)
    files = list((tmp_path / "pack" / "crops").iterdir())
    total = sum(f.stat().st_size for f in files) + (tmp_path / "pack" / "manifest.json").stat().st_size
    assert total <= 0.06 * 2**20 and len(files) == len(crops) >= 3
    assert {c["source"] for c in crops} == {"p0.png", "p1.png", "p2.png"}
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert manifest["photos"][0]["license"] == "CC0-1.0" and manifest["crops"] == crops
    with Image.open(tmp_path / "pack" / crops[0]["file"]) as img:
        assert img.size == (32, 32)
