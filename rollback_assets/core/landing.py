"""The landing zone: which files are there to read, with which mapping, and what keeps a folder or file
from being read.

Why apart from reading: a scan runs on every sensor tick and must never stop; a stray folder, a
missing or broken mapping costs only that folder (a warning naming it and the problem), never the
other sources.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .config_file import ConfigError
from .mapping import Mapping, load_mapping


@dataclass
class LandingScan:
    """What a landing zone holds: files to read with their mapping, and problems that keep a folder or
    file from being read (each named, so one bad folder never hides or stops the others)."""

    files: list[tuple[Path, Mapping]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def scan_landing_zone(root: str | Path, search_dirs: list[Path] | None = None) -> LandingScan:
    """One subfolder per source, named after its mapping. Folders and files starting with `_` or `.` are
    not sources (notes, the releases file, uploads in progress, Spark's `_SUCCESS` and `.crc` files).
    Every other file of a source folder is a candidate whatever its suffix: `read_file` reads it by its
    real format or quarantines it as a file, so nothing in a source folder is skipped without a trace."""
    root, scan = Path(root), LandingScan()
    if not root.is_dir():
        return scan
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(("_", ".")):
            continue
        if not entry.is_dir():
            scan.problems.append(f"{entry}: a file at the landing-zone root is not read; put it in its source's folder")
            continue
        try:
            mapping = load_mapping(entry.name, search_dirs)
        except FileNotFoundError:
            scan.problems.append(f"{entry}: no mapping named {entry.name!r}, so its files are not read; add "
                                 f"{entry.name}.yaml to the mappings folder, or start the folder's name with _")
            continue
        except ConfigError as error:  # YAML syntax, unknown keys, bad values: the message names file and key
            scan.problems.append(f"{entry}: mapping {entry.name!r} is invalid, so its files are not read: {error}")
            continue
        try:
            paths = sorted(entry.iterdir())
        except OSError as error:  # removed since listed, unreadable, a dangling link: this folder only
            scan.problems.append(f"{entry}: cannot be listed, so its files are not read: {error.strerror or error}")
            continue
        for path in paths:
            if path.name.startswith(("_", ".")):
                continue
            if path.is_dir():
                scan.problems.append(f"{path}: folders inside a source folder are not read")
            else:
                scan.files.append((path, mapping))
    return scan



def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_PARQUET_MAGIC = b"PAR1"


def file_format(path: str | Path) -> str | None:
    """The format a file is read as: its own bytes and suffix, not its folder's mapping. A Parquet file in a
    JSONL folder is read as Parquet, `.CSV` as CSV; None for a type we cannot read (reported, never skipped)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            if handle.read(4) == _PARQUET_MAGIC:
                return "parquet"
    except OSError:
        pass
    return SUFFIX_FORMATS.get(path.suffix.lower())



def select_candidates(candidates: list[tuple[Path, Mapping]], files: list[str]) -> list[tuple[Path, Mapping]]:
    """The candidates named in `files` (all when empty); a named file outside the zone is an error."""
    if not files:
        return candidates
    wanted = {str(Path(f).resolve()) for f in files}
    chosen = [(p, m) for p, m in candidates if str(p.resolve()) in wanted]
    missing = wanted - {str(p.resolve()) for p, _ in chosen}
    if missing:
        raise FileNotFoundError(f"not in the landing zone (or no valid mapping for its folder): {sorted(missing)}")
    return chosen
