"""Either path's result file, with one contract and one set of exit codes (``cvm process``, triggers, treatments).

Apart from ``cvm.cli.run`` so that it can reach the batch path's writer
(``cvm.cli.batch``, which imports ``cvm.cli.run``) without an import cycle,
and only when the batch path decided: a small run never imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cvm.cli.run import Run, finish_run

if TYPE_CHECKING:
    from cvm.agents.deciding import Decided


def write_results(run: Run, decided: Decided, path: Path) -> int:
    """The result file of either path (JSON, or Parquet beside a JSON summary when large); the exit code."""
    if decided.path == "batch":
        from cvm.cli.batch import write_batch

        return write_batch(run, decided, path)
    return finish_run(run, decided.results or [], path)
