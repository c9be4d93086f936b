"""Zip archives opened safely: no member may land outside the extraction folder, and the total
uncompressed size and the number of files are bounded (a zip bomb is refused, not unpacked)."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from tasks.extract.errors import CorruptFileError, UnsafeArchiveError

CHUNK = 1 << 20


def member_path(info: zipfile.ZipInfo, name: str) -> PurePosixPath:
    """The member's relative path; raises UnsafeArchiveError for absolute, drive or `..` paths and links."""
    raw = info.filename.replace("\\", "/")
    path = PurePosixPath(raw)
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":") or ".." in path.parts:
        raise UnsafeArchiveError(
            f"{name}: member '{info.filename}' would be written outside the extraction folder; "
            "re-create the zip without absolute or '..' paths"
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchiveError(f"{name}: member '{info.filename}' is a symbolic link; links are not opened")
    return path


def extract_archive(path: Path, dest: Path, name: str, max_bytes: int, max_files: int) -> list[Path]:
    """Unpack the zip's files into `dest` after checking every member; returns the files, in archive order."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptFileError(f"{name}: not a readable zip ({exc}); the download may be truncated") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > max_files:
            raise UnsafeArchiveError(
                f"{name}: {len(members)} files exceed the limit of {max_files} "
                "(data.extract.max_archive_files); unpack it yourself or raise the limit"
            )
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise UnsafeArchiveError(
                f"{name}: {declared:,} bytes uncompressed exceed the limit of {max_bytes:,} "
                "(data.extract.max_archive_bytes)"
            )
        targets = [(m, member_path(m, name)) for m in members]  # check all before writing any
        written = 0
        files: list[Path] = []
        for member, rel in targets:
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as src, target.open("wb") as out:
                    # count real bytes: a forged header can understate the size
                    while block := src.read(CHUNK):
                        written += len(block)
                        if written > max_bytes:
                            raise UnsafeArchiveError(
                                f"{name}: unpacks to more than {max_bytes:,} bytes "
                                "(data.extract.max_archive_bytes); refusing a possible zip bomb"
                            )
                        out.write(block)
            except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
                shutil.rmtree(dest, ignore_errors=True)
                raise CorruptFileError(
                    f"{name}: member '{member.filename}' cannot be unpacked ({exc}); "
                    "the archive is damaged or encrypted"
                ) from exc
            files.append(target)
    return files
