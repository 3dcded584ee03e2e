"""Run artifacts, like dbt's ``target/``: each processing run's own folder under ``output/runs/``.

``output/runs/<run id>/`` holds ``results.json`` (the result file of DESIGN
section 8; at scale a small JSON summary beside ``results.parquet``) and
``run.json``: what ran (CVM version, command line), on what (config path and
digest, data folder and its table digests, as-of, selector), how long each
stage took, the counts and the exit code. A repeat of a run id (a replay with
``--run-id``) gets ``<run id>.2``, ``.3`` ...: no invocation's record is ever
overwritten, and a dry run never replaces a real run's files.

Table digests must stay cheap at a million customers, so they hash each
file's name, size and modification time (``os.stat``), never its bytes:
reading gigabytes on every run would cost more than a small run itself. Any
rewrite of a table changes its mtime (and usually its size); the one blind spot
is a same-size copy that also restores the old mtime (``cp -p``, ``rsync -t``).
The config files are small, so their bytes are hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cvm.tools.results import copy_file_atomic, write_json_atomic

RUNS_FOLDER = "runs"
RUN_RECORD = "run.json"
RESULTS_FILE = "results.json"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def runs_dir(output_dir: Path) -> Path:
    return output_dir / RUNS_FOLDER


def folder_name(run_id: str) -> str:
    """The run id itself when it is a safe folder name; else ``run-<digest>`` (``--run-id`` may be any text)."""
    if _SAFE_NAME.fullmatch(run_id) and ".." not in run_id:
        return run_id
    return "run-" + hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:16]


def new_run_folder(output_dir: Path, run_id: str) -> Path:
    """A folder no earlier invocation used: ``<run id>``, else ``<run id>.2``, ``.3`` ... (made atomically)."""
    base = runs_dir(output_dir)
    base.mkdir(parents=True, exist_ok=True)
    name = folder_name(run_id)
    for n in range(1, 10_000):
        folder = base / (name if n == 1 else f"{name}.{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"{base / name}: 9,999 invocations of this run id already recorded")


def file_digest(path: Path) -> str | None:
    """sha256 of a small file's bytes (config, custom treatments); None when it does not exist."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _stat_digest(name: str, st: os.stat_result) -> str:
    return hashlib.sha256(f"{name}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()


def table_digests(folder: Path) -> dict[str, Any]:
    """The data folder and each table file's name+size+mtime digest (stat only, never the bytes: see the module)."""
    tables: dict[str, Any] = {}
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            st = path.stat()
            name = path.relative_to(folder).as_posix()
            tables[name] = {
                "bytes": st.st_size,
                "modified": datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(),
                "digest": _stat_digest(name, st)[:16],
            }
    whole = hashlib.sha256("\n".join(f"{n} {t['digest']}" for n, t in tables.items()).encode()).hexdigest()
    return {"folder": str(folder.resolve()), "method": "sha256(name, size, mtime)", "digest": whole, "tables": tables}


def write_run_record(folder: Path, record: dict[str, Any]) -> Path:
    path = folder / RUN_RECORD
    write_json_atomic(path, record)
    return path


def copy_result_file(source: Path, target: Path) -> None:
    """Copy a run's ``results.json`` to ``target`` (atomically); a Parquet file beside it is linked (or copied) beside the target.

    The copy's ``results_file`` then names the Parquet beside it, so each copy stands alone.
    """
    parquet = source.with_suffix(".parquet")
    if not parquet.is_file():  # the rows are in the JSON itself (up to batch.auto_threshold customers): copy its bytes
        stale = _parquet_named_by(target)
        copy_file_atomic(source, target)
        if stale is not None:
            stale.unlink(missing_ok=True)
        return
    document = json.loads(source.read_text(encoding="utf-8"))  # a summary: the rows are in the Parquet file
    beside = target.with_suffix(".parquet")
    tmp = beside.parent / f".{beside.name}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(parquet, tmp)
    except OSError:  # another file system, or links refused: a copy
        shutil.copyfile(parquet, tmp)
    os.replace(tmp, beside)
    document["results_file"] = str(beside)
    write_json_atomic(target, document)


_SUMMARY_MAX_BYTES = 1 << 20


def _parquet_named_by(document: Path) -> Path | None:
    """The Parquet file an earlier copy of a large run put beside ``document`` and named in it.

    A copy of a small run replaces the JSON but would leave that Parquet behind, where it
    reads as this copy's rows. A Parquet file the JSON does not name is someone else's: kept.
    """
    beside = document.with_suffix(".parquet")
    if not beside.is_file():
        return None
    try:
        if document.stat().st_size > _SUMMARY_MAX_BYTES:  # rows, not a summary: it names no Parquet file
            return None
        named = json.loads(document.read_text(encoding="utf-8")).get("results_file")
    except (OSError, ValueError, AttributeError):  # missing, unreadable, or not a result document
        return None
    if not isinstance(named, str) or Path(named).resolve() != beside.resolve():  # the same file, however it was written
        return None
    return beside


_DICT_FIELDS = ("counts", "timings_seconds", "config", "data", "summary")


def _well_formed(record: Any) -> bool:
    """Whether a record has the shape this version writes where ``cvm runs`` reads it (a hand-edited file may not)."""
    if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
        return False
    if not all(isinstance(record.get(name, {}), dict) for name in _DICT_FIELDS):
        return False
    lists = (record.get("command", []), record.get("copies", []))
    maps = (record.get("counts", {}).get("by_status", {}), record.get("data", {}).get("tables", {}))
    timings = record.get("timings_seconds", {}).values()
    return (all(isinstance(v, list) for v in lists) and all(isinstance(m, dict) for m in maps)
            and all(isinstance(t, int | float) for t in timings))


def _records(output_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    base = runs_dir(output_dir)
    if not base.is_dir():
        return
    for folder in base.iterdir():
        path = folder / RUN_RECORD
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # a run still going (no run.json yet), or a damaged file
            continue
        if _well_formed(record):
            yield folder, record


def list_runs(output_dir: Path) -> list[dict[str, Any]]:
    """Every recorded run, newest first, each with its ``folder``."""
    found = [{**record, "folder": str(folder)} for folder, record in _records(output_dir)]
    return sorted(found, key=lambda r: (str(r.get("started_at", "")), r["folder"]), reverse=True)


def find_runs(output_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """The recorded invocations of one run id (or of one folder name, e.g. ``run-...-1a2b3c.2``), newest first."""
    return [r for r in list_runs(output_dir) if r.get("run_id") == run_id or Path(r["folder"]).name == run_id]
