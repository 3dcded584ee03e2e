"""What every CLI shares: one-line errors and exit codes, settings, logging, output paths.

Exit codes (``cvm.utils.errors``): 0 all processed; 1 some customers failed
(the result file still holds every customer); 2 bad usage, config or input;
3 an internal error, a bug (an unexpected exception); 4 the environment
failed (the state database unreachable or locked, the model endpoint
unusable): the same command may work once that is fixed; 141 stdout was closed
(``| head``) before everything was printed, after the work was done and written
(``run.json`` keeps the run's own 0 or 1). Every error is one line on stderr; a
traceback goes only to the log file.

Logging is set up once per command, after its config is loaded
(``setup_logging``); until then ``run_app``'s console-only default applies.

Conventions every command shares (``new_app``, ``run_app``): ``-h``/``--help``,
Rich help that shows choices and defaults, one (hyphenated) spelling of each
flag in help while the prototype's underscore spellings (``--customer_ids``)
keep working as hidden aliases, and a bare group (``cvm``, ``cvm flows``)
printing its help.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeGuard

import structlog
import typer
from pydantic import ValidationError

from cvm.tools.results import non_regular_kind
from cvm.utils.config import CVMConfig
from cvm.utils.errors import EXIT_BROKEN_PIPE, EXIT_INTERNAL, CVMError, UsageError
from cvm.utils.logging import configure_logging, level_number, redact
from cvm.utils.settings import RuntimeSettings

log = structlog.get_logger(__name__)


HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


def new_app(*, completion: bool = False, **settings: Any) -> typer.Typer:
    """A Typer app with the shared conventions: ``-h``, Rich help, no pretty tracebacks (``run_app`` reports errors)."""
    return typer.Typer(
        add_completion=completion, pretty_exceptions_enable=False, rich_markup_mode="rich",
        context_settings=HELP_OPTIONS, **settings,
    )


def _commands(command: Any) -> Iterator[Any]:
    """A click command and every command below it."""
    yield command
    for child in getattr(command, "commands", {}).values():
        yield from _commands(child)


def hide_underscore_aliases(command: Any) -> dict[str, str]:
    """Take ``--customer_ids``-style spellings out of every option whose hyphenated twin exists; return them.

    Help then shows one spelling; ``run_app`` rewrites the hidden spellings to the
    hyphenated ones before parsing, so the prototype's scripts keep working.
    """
    aliases: dict[str, str] = {}
    for cmd in _commands(command):
        for param in getattr(cmd, "params", []):
            opts = getattr(param, "opts", None)
            if not isinstance(opts, list):
                continue
            for name in [o for o in opts if o.startswith("--") and "_" in o and o.replace("_", "-") in opts]:
                opts.remove(name)
                aliases[name] = name.replace("_", "-")
    return aliases


def spell_aliases(argv: list[str], aliases: dict[str, str]) -> list[str]:
    """``--customer_ids U1`` -> ``--customer-ids U1`` (also ``--x_y=v``), up to a ``--`` that ends the options."""
    spelled: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "--":
            return spelled + argv[index:]
        name, sep, value = arg.partition("=")
        spelled.append(aliases[name] + sep + value if name in aliases else arg)
    return spelled


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line on stderr (secrets redacted by value, like every log line) and exit."""
    print(f"error: {redact(message)}", file=sys.stderr)
    raise SystemExit(code)


# Settings whose rejected value must never be echoed back (it may be most of a secret).
_SECRET_SETTINGS = frozenset({"OPENAI_API_KEY", "CVM_DB_URL"})


def load_settings() -> RuntimeSettings:
    """Environment and ``.env``, with a one-line error for a bad value."""
    try:
        return RuntimeSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "environment"
        shown = "" if name.upper() in _SECRET_SETTINGS else f" (got {first.get('input')!r})"
        raise UsageError(f"environment variable {name}: {first['msg']}{shown}") from None


def output_path(settings: RuntimeSettings, name: str) -> Path:
    """Where an ``--output_file`` goes, refused (exit 2) before any work when writing there would go wrong.

    Every command that writes an output file resolves it here. A name ending in a
    separator (or ``.``/``..``) means a folder, and ``Path`` would quietly drop the
    separator and write a file named like the folder; an existing device, FIFO or
    socket would be replaced by the atomic write (as root, ``/dev/null`` itself).
    """
    last = name.replace(os.sep, "/").rsplit("/", 1)[-1]
    if last in ("", ".", ".."):
        raise UsageError(f"output file {name!r} does not end in a file name; give one, e.g. {name.rstrip('/.')}/cvm_results.json")
    target = settings.resolve_output_path(name)
    if (kind := non_regular_kind(target)) is not None:
        raise UsageError(f"output file {target} exists and is {kind}, not a regular file; give another path")
    return settings.writable_output_path(name)


def _log_file(settings: RuntimeSettings, file_output: str | bool | None) -> Path | None:
    """``CVM_LOG_DIR`` wins; else the config's ``file_output`` path; ``false`` turns the file off."""
    if not file_output:
        return None
    if "log_dir" in settings.model_fields_set or file_output is True:
        return settings.log_dir / "cvm.log"
    return Path(file_output)


def setup_logging(settings: RuntimeSettings, log_level: str | None, config: CVMConfig | None = None) -> None:
    """Console at ``--log_level`` (default WARNING); JSON lines to ``logs/cvm.log`` at the config's level.

    Call it once per command, once the config (if the command has one) is loaded.
    """
    level = log_level or settings.log_level
    if level is not None:
        try:
            level_number(level)
        except ValueError as exc:
            raise UsageError(f"--log_level: {exc}") from None
    logging_cfg = config.settings.logging if config else None
    log_file = _log_file(settings, logging_cfg.file_output if logging_cfg else True)
    configure_logging(
        console_level=level or "WARNING",
        file_level=level or (logging_cfg.default_level if logging_cfg else "INFO"),
        log_file=log_file,
        max_bytes=logging_cfg.rotation.max_bytes if logging_cfg else 10_485_760,
        backup_count=logging_cfg.rotation.backup_count if logging_cfg else 5,
    )


class _UsageProblem(Protocol):
    exit_code: int

    def format_message(self) -> str: ...


def _is_usage_problem(exc: Exception) -> TypeGuard[_UsageProblem]:
    """Typer's own parse errors (bad option, missing value...), whatever typer version raised them."""
    return hasattr(exc, "format_message") and hasattr(exc, "exit_code")


def _stdout_closed() -> bool:
    """Whether the command line parser met a closed stdout (EPIPE): click (typer's own copy too) then wraps the streams
    in a ``PacifyFlushWrapper`` to stay quiet and exits with 1. Matched by name: typer's copy of click is private."""
    return type(sys.stdout).__name__ == "PacifyFlushWrapper"


def run_app(app: typer.Typer, argv: list[str] | None = None) -> NoReturn:
    """Run a typer app so that every user error is one line on stderr and a documented exit code."""
    command = typer.main.get_command(app)
    args = spell_aliases(list(sys.argv[1:] if argv is None else argv), hide_underscore_aliases(command))
    configure_logging(console_level="WARNING", log_file=None)  # until the command knows its settings
    try:
        code = command.main(args=args, standalone_mode=False, prog_name=Path(sys.argv[0]).name)
    except SystemExit as exc:
        if exc.code == 1 and _stdout_closed():
            raise SystemExit(EXIT_BROKEN_PIPE) from None  # not "some customers failed": nobody read the rest
        raise
    except CVMError as exc:
        log.info("command_failed", error=str(exc), error_type=type(exc).__name__)
        fail(str(exc), exc.exit_code)
    except typer.Abort:
        fail("aborted", 130)
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group (cvm, cvm flows): its help, not an error
            print(getattr(exc, "message", ""), end="")  # Rich help is printed as the exception is made
            raise SystemExit(0) from None
        if _is_usage_problem(exc):
            fail(f"{exc.format_message()} (see --help)", exc.exit_code)
        log.exception("command_crashed")
        fail(f"internal error ({type(exc).__name__}: {exc}); the traceback is in logs/cvm.log", EXIT_INTERNAL)
    raise SystemExit(code if isinstance(code, int) else 0)
