"""Files inside Qt resource archives (.rcc), read without Qt: GCompris packs its photographs in them.

The layout is Qt's (``qresource.cpp``): a 20-byte header (24 from version 3) giving the offsets of a tree of
fixed-size nodes, of a name table (UTF-16BE names) and of the payloads (each prefixed by its length). A file
node's payload is stored as is, zlib-compressed behind a 4-byte size (``qCompress``), or as a zstd frame.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import NamedTuple

COMPRESSED_ZLIB = 0x01
DIRECTORY = 0x02
COMPRESSED_ZSTD = 0x04

class _Node(NamedTuple):
    flags: int
    data_offset: int


class QtResources:
    """The files of one .rcc archive, by their resource path ("images/lion.webp"), decompressed on reading."""

    def __init__(self, blob: bytes):
        if len(blob) < 20 or blob[:4] != b"qres":
            raise ValueError("not a Qt resource file (no 'qres' magic)")
        self._blob = blob
        self.version, tree, payloads, names = struct.unpack_from(">4I", blob, 4)
        if not 1 <= self.version <= 3:
            raise ValueError(f"Qt resource format version {self.version} is not known")
        if max(tree, payloads, names) >= len(blob):
            raise ValueError("Qt resource offsets point past the end of the file")
        self._tree, self._payloads, self._names = tree, payloads, names
        self._node_size = 14 if self.version == 1 else 22  # version 2 added an 8-byte modification time
        self._files: dict[str, _Node] = {}
        self._walk(0, "", set())

    @classmethod
    def open(cls, path: Path | str) -> QtResources:
        return cls(Path(path).read_bytes())

    def paths(self) -> list[str]:
        return sorted(self._files)

    def __contains__(self, path: object) -> bool:
        return path in self._files

    def read(self, path: str) -> bytes:
        """The file's content, decompressed; KeyError if the archive has no such file."""
        node = self._files[path]
        size_at = self._payloads + node.data_offset
        (size,) = self._unpack(">I", size_at)
        data = self._blob[size_at + 4:size_at + 4 + size]
        if len(data) != size:
            raise ValueError(f"{path}: payload runs past the end of the file")
        if node.flags & COMPRESSED_ZSTD:
            import zstandard

            return zstandard.ZstdDecompressor().decompress(data)
        if node.flags & COMPRESSED_ZLIB:
            return zlib.decompress(data[4:])  # the first 4 bytes repeat the uncompressed size
        return data

    def _unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        try:
            return struct.unpack_from(fmt, self._blob, offset)
        except struct.error:
            raise ValueError("Qt resource structure runs past the end of the file") from None

    def _name(self, name_offset: int) -> str:
        at = self._names + name_offset
        (length,) = self._unpack(">H", at)
        raw = self._blob[at + 6:at + 6 + 2 * length]  # after the length and a 4-byte hash
        if len(raw) != 2 * length:
            raise ValueError("Qt resource name runs past the end of the file")
        return raw.decode("utf-16-be")

    def _walk(self, index: int, path: str, seen: set[int]) -> None:
        if index in seen:
            raise ValueError("Qt resource tree reaches a node twice (a loop in a damaged file)")
        seen.add(index)
        at = self._tree + index * self._node_size
        (flags,) = self._unpack(">H", at + 4)  # after the name offset
        if not flags & DIRECTORY:
            (data_offset,) = self._unpack(">I", at + 10)  # after the flags and the 4-byte locale
            self._files[path] = _Node(flags, data_offset)
            return
        count, first = self._unpack(">II", at + 6)
        for child in range(first, first + count):
            name = self._name(self._unpack(">I", self._tree + child * self._node_size)[0])
            self._walk(child, f"{path}/{name}" if path else name, seen)
