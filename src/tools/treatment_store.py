"""``custom_treatments.json``: the custom treatments added at run time, safe under concurrent writers.

Every change is read-modify-write under an exclusive file lock beside the file
(``<file>.lock``, ``filelock``), so ten processes adding at once all land; the
new content goes to a temp file that is renamed over the old one
(``write_json_atomic``), so a crash mid-write leaves the old file whole. The
file is read through the config loader's ``load_custom_treatments``, so a
broken file is a ``ConfigError`` naming it, raised before anything is written:
a failed load never overwrites the file.

When the path is a symlink (a file kept in a shared or versioned folder), the
change is written through it: the link is resolved, the lock and the temp file
sit beside the real file, and the rename replaces that file, so the link stays
a link. The lock file is deleted before the lock is released, whether the
change succeeded or not, so no ``.lock`` is left beside the file. That is safe
because filelock checks, once it holds a lock, that the lock file still has a
name (``st_nlink``), and retries if it was deleted while it waited.

Ids are readable and stable: ``custom_`` plus the name in snake case, and a
numeric suffix (``_2``, ``_3`` ...) when that id is taken.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from cvm.tools.results import write_json_atomic
from cvm.utils.config import CustomTreatmentSpec, Treatment, load_custom_treatments
from cvm.utils.errors import ConfigError, UsageError

ID_PREFIX = "custom_"
MAX_SLUG_CHARS = 56
_PATH_FIX = "check that its folder exists and is writable, or set CVM_CUSTOM_TREATMENTS to another file"


def slug_id(display_name: str) -> str:
    """``"Personalized Video Message"`` -> ``custom_personalized_video_message`` (ASCII, at most 63 characters)."""
    ascii_name = unicodedata.normalize("NFKD", display_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    if len(slug) > MAX_SLUG_CHARS:  # cut at a word boundary when there is one
        head = slug[: MAX_SLUG_CHARS + 1]
        slug = head.rsplit("_", 1)[0] if "_" in head else head[:MAX_SLUG_CHARS]
    return ID_PREFIX + (slug or "treatment")


def document(treatment: Treatment) -> dict[str, Any]:
    """A treatment in the file's shape (the prototype's, plus channel, purpose and approval)."""
    return {
        "display_name": treatment.display_name,
        "description": treatment.description,
        "enabled": treatment.enabled,
        "channel": treatment.channel,
        "purpose": treatment.purpose,
        "requires_approval": treatment.requires_approval,
        "value_per_accept": treatment.value_per_accept,
        "constraints": {
            "max_per_day": treatment.max_per_day,
            "cost_per_contact_pounds": treatment.cost_per_contact,
            "priority": treatment.priority,
        },
    }


class TreatmentStore:
    """The custom treatments file: load, add, update and remove, each change atomic and locked."""

    def __init__(self, path: str | Path, lock_timeout: float = 30.0):
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    def load(self) -> dict[str, Treatment]:
        """Every custom treatment; a missing file means none. Readers need no lock: writes are renames."""
        try:
            return load_custom_treatments(self.path)
        except OSError as exc:  # a folder where the file should be, no permission ...: the user's to fix, not a crash
            raise ConfigError(f"{self.path}: cannot be read ({exc.strerror or exc}); {_PATH_FIX}", path=str(self.path)) from None

    def get(self, treatment_id: str) -> Treatment:
        treatments = self.load()
        if treatment_id not in treatments:
            raise self._unknown(treatment_id, treatments)
        return treatments[treatment_id]

    def add(self, spec: CustomTreatmentSpec, *, reserved: Collection[str] = (), requested_id: str | None = None) -> Treatment:
        """Store a new treatment under ``requested_id`` or the next free readable id; ``reserved`` ids are never used."""
        with self._locked() as (target, treatments):
            taken = set(reserved) | set(treatments)
            if requested_id is not None and requested_id in taken:
                raise UsageError(f"id {requested_id} is already used; pick another id or update it with: update {requested_id} ...")
            treatment_id = requested_id or _free_id(slug_id(spec.display_name), taken)
            treatments[treatment_id] = spec.to_treatment(treatment_id)
            self._write(target, treatments)
        return treatments[treatment_id]

    def update(self, treatment_id: str, change: Callable[[Treatment], CustomTreatmentSpec]) -> tuple[Treatment, Treatment]:
        """Replace one treatment by ``change(old)``, computed under the lock so no concurrent change is lost."""
        with self._locked() as (target, treatments):
            if treatment_id not in treatments:
                raise self._unknown(treatment_id, treatments)
            old = treatments[treatment_id]
            treatments[treatment_id] = change(old).to_treatment(treatment_id)
            self._write(target, treatments)
        return old, treatments[treatment_id]

    def remove(self, treatment_id: str) -> Treatment:
        with self._locked() as (target, treatments):
            if treatment_id not in treatments:
                raise self._unknown(treatment_id, treatments)
            removed = treatments.pop(treatment_id)
            self._write(target, treatments)
        return removed

    @contextmanager
    def _locked(self) -> Iterator[tuple[Path, dict[str, Treatment]]]:
        """The real file behind any symlink, and its content read while holding the lock, kept until the block ends.

        The lock sits beside the real file, so two links to one file share one lock. Its file is
        deleted while the lock is still held, however the block ends (a refused change, a full disk).
        """
        target = self.path.resolve()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot create its folder {target.parent} ({exc.strerror or exc}); {_PATH_FIX}", path=str(self.path)) from None
        lock = FileLock(f"{target}.lock", timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise ConfigError(f"{self.path} is locked by another process ({lock.lock_file}); try again", path=str(self.path)) from None
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot create the lock {lock.lock_file} ({exc.strerror or exc}); {_PATH_FIX}", path=str(self.path)) from None
        try:
            yield target, self.load()
        finally:
            Path(lock.lock_file).unlink(missing_ok=True)
            lock.release()

    def _write(self, target: Path, treatments: dict[str, Treatment]) -> None:
        """Replace the real file (never the symlink to it) with the new content, atomically."""
        try:
            write_json_atomic(target, {tid: document(t) for tid, t in treatments.items()})
        except OSError as exc:
            raise ConfigError(f"{self._named(target)}: cannot be written ({exc.strerror or exc}); {_PATH_FIX}", path=str(self.path)) from None

    def _named(self, target: Path) -> str:
        """The path as the user gave it, and the real file when that is a link."""
        return str(self.path) if self.path.absolute() == target else f"{self.path} (a link to {target})"

    def _unknown(self, treatment_id: str, treatments: dict[str, Treatment]) -> UsageError:
        known = ", ".join(sorted(treatments)) or "none yet"
        return UsageError(f"no custom treatment {treatment_id!r} in {self.path}; custom treatments: {known}")


def _free_id(base: str, taken: Collection[str]) -> str:
    """``base``, or ``base_2``, ``base_3`` ... whichever is free first."""
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    return candidate
