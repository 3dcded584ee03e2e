"""What every CLI shares: exit codes per error class, one line on stderr, logging set up once per command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import typer

from cvm.cli import common
from cvm.cli.common import run_app
from cvm.utils.errors import ConfigError, LedgerError, LLMUnavailableError, UnknownCustomerError


def app_raising(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def go() -> None:
        raise exc

    return app


class TestExitCodes:
    """2 bad usage, 1 some customers failed, 3 an internal error (a bug), 4 the environment failed."""

    @pytest.mark.parametrize(
        ("exc", "code", "line"),
        [
            (ConfigError("config/cvm_config.yaml: settings.timezone: unknown zone"), 2,
             "error: config/cvm_config.yaml: settings.timezone: unknown zone"),
            (UnknownCustomerError("unknown customer U999"), 1, "error: unknown customer U999"),
            (LedgerError("cannot open the ledger state/cvm.db (database is locked)"), 4,
             "error: cannot open the ledger state/cvm.db (database is locked)"),
            (LLMUnavailableError("the LLM endpoint answered HTTP 503"), 4, "error: the LLM endpoint answered HTTP 503"),
            (KeyError("oops"), 3, "error: internal error (KeyError: 'oops'); the traceback is in logs/cvm.log"),
        ],
        ids=["config", "unknown-customer", "ledger-locked", "llm-down", "crash"],
    )
    def test_codes(self, exc: BaseException, code: int, line: str, capsys: pytest.CaptureFixture[str]):
        with pytest.raises(SystemExit) as exited:
            run_app(app_raising(exc), [])
        assert exited.value.code == code
        assert capsys.readouterr().err.splitlines() == [line]

    def test_bad_usage(self, capsys: pytest.CaptureFixture[str]):
        with pytest.raises(SystemExit) as exited:
            run_app(app_raising(KeyError("never")), ["--no-such-flag"])
        assert exited.value.code == 2
        assert "No such option: --no-such-flag (see --help)" in capsys.readouterr().err


class TestEnvironmentFailures:
    """A state database that cannot be opened is exit 4, not bad usage, in a real command."""

    def test_unopenable_database(self, run_cli: Callable[..., object], cli_env: dict[str, str], tmp_path: Path):
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the database folder should be", encoding="utf-8")
        env = {**cli_env, "CVM_DB_URL": f"sqlite:///{blocker}/cvm.db"}
        proc = run_cli("cvm_processor_cli", "--customer_ids", "U124", "--output_file", "r.json", env=env)
        assert proc.returncode == 4, proc.stderr  # type: ignore[attr-defined]
        assert proc.stderr.startswith("error: cannot open the ledger")  # type: ignore[attr-defined]
        assert len(proc.stderr.splitlines()) == 1  # type: ignore[attr-defined]


class TestLoggingOnce:
    """Each command sets up logging once, after its config is loaded."""

    @pytest.mark.parametrize(
        "argv",
        [
            ["approvals", "list"],
            ["report", "--run-id", "run-none"],
            ["process", "--customer_ids", "U124", "--dry-run", "--output_file", "r.json"],
            ["treatments", "list"],
            ["flows", "runs"],
        ],
        ids=["approvals", "report", "process", "treatments", "flows"],
    )
    def test_setup_logging_called_once(
        self, argv: list[str], monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str], tmp_path: Path,
    ):
        from cvm.cli.main import app

        for key, value in cli_env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(tmp_path)
        calls: list[object] = []
        real = common.setup_logging

        def counting(*args: object, **kwargs: object) -> None:
            calls.append(args[2] if len(args) > 2 else kwargs.get("config"))
            real(*args, **kwargs)  # type: ignore[arg-type]

        for module in ("cvm.cli.common", "cvm.cli.run", "cvm.cli.approvals", "cvm.cli.report", "cvm.cli.flows",
                       "cvm.cli.treatments"):
            monkeypatch.setattr(f"{module}.setup_logging", counting)
        with pytest.raises(SystemExit):
            run_app(app, argv)
        assert len(calls) == 1, argv


class TestClosedStdout:
    """``cvm ... | head``: the reader goes away; the run's work is kept and the exit code says the pipe closed."""

    @pytest.mark.parametrize("output", [("--show", "all"), ("--output", "json")], ids=["table", "json"])
    def test_closed_pipe_exits_141_after_writing_the_results(
        self, cli_env: dict[str, str], tmp_path: Path, output: tuple[str, str],
    ) -> None:
        import json
        import os
        import subprocess
        import sys

        read_end, write_end = os.pipe()
        os.close(read_end)  # nobody will read: every write to stdout fails with EPIPE
        try:
            proc = subprocess.run(
                [str(Path(sys.executable).parent / "cvm"), "process", "--all-customers", *output],
                stdout=write_end, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=cli_env, cwd=tmp_path,
                timeout=120,
            )
        finally:
            os.close(write_end)
        assert proc.returncode == 141, proc.stderr
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
        results = json.loads((tmp_path / "output" / "cvm_results.json").read_text(encoding="utf-8"))["results"]
        assert len(results) == 12 and all(r["status"] != "error" for r in results)
