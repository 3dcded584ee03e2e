"""What ``cvm state reset`` clears: the state database (ledger and flow runs), the output folder and the logs.

Never ``.venv``, the config or the data: ``make clean`` removed the virtualenv
too, which is why this exists. A folder is refused (nothing removed) when
clearing it would take more than CVM's own files: the filesystem root, the
home folder, the working folder or one above it, or a folder holding a
``.venv``, ``.git`` or ``pyproject.toml`` (``CVM_OUTPUT_DIR=.`` must not wipe a
checkout), or one that is or holds the data folder, the config or the custom
treatments file (``CVM_OUTPUT_DIR=/srv/cvm`` beside ``/srv/cvm/data``). The database is refused while another process has it open. Folders are
emptied, not removed: they and their ``.gitkeep`` placeholders stay, so a
checkout shows no deleted files afterwards.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cvm.tools.sqlite_store import sqlite_path
from cvm.utils.errors import LedgerError, UsageError

_PROJECT_MARKERS = (".venv", ".git", "pyproject.toml")
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
_KEPT = frozenset({".gitkeep"})


@dataclass(frozen=True)
class ResetPlan:
    """The files a reset removes and the folders it empties (keeping the folders and their ``.gitkeep``)."""

    database_files: tuple[Path, ...]
    folders: tuple[Path, ...]

    def paths(self) -> list[Path]:
        return [*self.database_files, *self.folders]

    def empty(self) -> bool:
        return not self.paths()


def refuse_unsafe_folder(folder: Path, setting: str, kept: Mapping[str, Path] | None = None) -> None:
    """A ``UsageError`` when emptying ``folder`` could remove more than CVM's outputs (see the module).

    ``kept``: what a reset never touches (setting name -> path), refused when it is ``folder`` or inside it.
    """
    resolved = folder.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if resolved == Path(resolved.anchor) or resolved == home or cwd == resolved or cwd.is_relative_to(resolved):
        raise UsageError(f"{setting} is {folder} ({resolved}): refusing to empty the root, home or working folder; point it at CVM's own folder")
    marker = next((m for m in _PROJECT_MARKERS if (resolved / m).exists()), None)
    if marker is not None:
        raise UsageError(f"{setting} is {folder}, which holds {marker}: refusing to empty a project folder; point it at CVM's own folder")
    for name, path in (kept or {}).items():
        if path.resolve().is_relative_to(resolved):
            raise UsageError(f"{setting} is {folder}, which holds {name} ({path}): refusing to empty it; point it at CVM's own folder")


def plan_reset(db_url: str, output_dir: Path, log_dir: Path, kept: Mapping[str, Path] | None = None) -> ResetPlan:
    """What exists to remove, after the safety checks (nothing is removed here); ``kept`` as in ``refuse_unsafe_folder``."""
    refuse_unsafe_folder(output_dir, "CVM_OUTPUT_DIR", kept)
    refuse_unsafe_folder(log_dir, "CVM_LOG_DIR", kept)
    database = sqlite_path(db_url)
    _refuse_other_file(database)
    files = tuple(p for p in (database, *(Path(f"{database}{s}") for s in _SQLITE_SIDE_FILES)) if p.is_file())
    folders = tuple(dict.fromkeys(f for f in (output_dir, log_dir) if f.is_dir() and _contents(f)))
    return ResetPlan(files, folders)


_SQLITE_HEADER = b"SQLite format 3\x00"


def _refuse_other_file(database: Path) -> None:
    """A ``UsageError`` when ``CVM_DB_URL`` names a file that is not an SQLite database (a typo must not delete it)."""
    try:
        with database.open("rb") as handle:
            head = handle.read(len(_SQLITE_HEADER))
    except (FileNotFoundError, IsADirectoryError):
        return
    except OSError as exc:
        raise UsageError(f"CVM_DB_URL names {database}, which cannot be read ({exc.strerror or exc}); nothing removed") from None
    if head and head != _SQLITE_HEADER:
        raise UsageError(f"CVM_DB_URL names {database}, which is not an SQLite database: refusing to remove it; nothing removed")


def _contents(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name not in _KEPT]


def _check_unused(database: Path) -> None:
    """A ``LedgerError`` (exit 4) when another process has the database open: removing it then would lose that run.

    An exclusive transaction only sees a process in the middle of a write; in WAL mode (every CVM store) one that
    is between writes (a run between two customers, the scheduler between rounds) shows only in that leaving WAL
    mode needs the last connection: ``journal_mode=DELETE`` fails while another is open. The file is removed next,
    so changing its journal mode costs nothing.
    """
    try:
        conn = sqlite3.connect(database, timeout=0.5, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("ROLLBACK")
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        raise LedgerError(f"the state database {database} is in use ({exc}); stop the other cvm command first") from None
    if mode is None or str(mode[0]).lower() == "wal":
        raise LedgerError(f"the state database {database} is open in another process; stop the other cvm command first")


def reset(plan: ResetPlan) -> list[Path]:
    """Remove what the plan lists; return what was removed."""
    if plan.database_files and not plan.database_files[0].name.endswith(_SQLITE_SIDE_FILES):
        _check_unused(plan.database_files[0])
    for path in plan.database_files:
        path.unlink(missing_ok=True)
    for folder in plan.folders:
        for path in _contents(folder):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    return plan.paths()
