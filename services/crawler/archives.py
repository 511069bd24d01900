"""Local imports: a folder or a zip of images, read without ever writing an entry's name to disk.

Zip-slip: nothing is extracted, entries are read into memory, and names that are absolute or
climb (`..`) are refused anyway so they never reach a manifest as a path. Zip bombs: the entry
count, each entry's size (read with a hard cap, since declared sizes can lie), the total
uncompressed bytes and the compression ratio are all bounded.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 20_000
    max_entry_bytes: int = 20 * 1024 * 1024
    max_total_bytes: int = 4 * 1024**3
    max_ratio: float = 200.0  # images barely compress; a huge ratio is a bomb


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes | None
    reason: str | None = None  # why the entry was refused (data is None then)


class ArchiveError(ValueError):
    """The archive as a whole is unusable."""


def _unsafe_name(name: str) -> str | None:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "unsafe path: absolute or Windows-style name"
    if any(part == ".." for part in PurePosixPath(name).parts):
        return "unsafe path: climbs out of the archive (zip-slip)"
    return None


def iter_zip(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> Iterator[Entry]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ArchiveError(f"{path.name} is not a readable zip: {error}") from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > limits.max_entries:
            raise ArchiveError(f"{path.name} has {len(infos)} entries; at most {limits.max_entries}")
        total = 0
        for info in infos:
            refusal = _unsafe_name(info.filename) or _refuse_entry(info, limits)
            if refusal:
                yield Entry(info.filename, None, refusal)
                continue
            if total + info.file_size > limits.max_total_bytes:
                yield Entry(info.filename, None, f"archive exceeds {limits.max_total_bytes} uncompressed bytes")
                continue
            try:
                with archive.open(info) as handle:
                    data = handle.read(limits.max_entry_bytes + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as error:
                yield Entry(info.filename, None, f"unreadable entry: {error}")
                continue
            if len(data) > limits.max_entry_bytes:
                yield Entry(info.filename, None, f"too large: more than {limits.max_entry_bytes} bytes")
                continue
            total += len(data)
            yield Entry(info.filename, data)


def _refuse_entry(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str | None:
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link refused"
    if info.flag_bits & 0x1:
        return "encrypted entry refused"
    if info.file_size > limits.max_entry_bytes:
        return f"too large: declares {info.file_size} bytes, cap {limits.max_entry_bytes}"
    if info.file_size > 1024 * 1024 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        return f"zip bomb refused: compression ratio above {limits.max_ratio:.0f}"
    return None


def iter_folder(root: Path, limits: ArchiveLimits = ArchiveLimits()) -> Iterator[Entry]:
    """Image files under `root` (by suffix), symlinks refused so the import stays inside the folder."""
    count = 0
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(directory) / name
            relative = str(path.relative_to(root))
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            count += 1
            if count > limits.max_entries:
                raise ArchiveError(f"{root} has more than {limits.max_entries} images")
            if path.is_symlink():
                yield Entry(relative, None, "symbolic link refused")
            elif path.stat().st_size > limits.max_entry_bytes:
                yield Entry(relative, None, f"too large: more than {limits.max_entry_bytes} bytes")
            else:
                yield Entry(relative, path.read_bytes())
