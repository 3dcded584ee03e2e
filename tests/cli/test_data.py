"""``cvm data generate`` run as a user runs it: output, files, exit codes, one-line errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cvm.tools.data_source import FileDataSource
from cvm.tools.records import TABLES

CLI = "cvm"


def nonblank(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_environment_error(proc: Any, *mentions: str) -> str:
    """A broken install is the environment's failure (exit 4), said in one line like a usage error."""
    return assert_usage_error(proc, *mentions, exit_code=4)


def assert_usage_error(proc: Any, *mentions: str, exit_code: int = 2) -> str:
    """Exit 2, exactly one line on stderr naming what is wrong, no traceback, nothing on stdout."""
    assert proc.returncode == exit_code, f"exit {proc.returncode}; stderr: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = nonblank(proc.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    for mention in mentions:
        assert mention in lines[0], f"{mention!r} not in {lines[0]!r}"
    assert proc.stdout == ""
    return lines[0]


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_here(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """Run ``cvm ARGS`` in this process (same entry point as the console script, no start-up cost)."""
    from cvm.cli.common import run_app
    from cvm.cli.main import app

    def run(*args: str) -> Ran:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            run_app(app, list(args))
        captured = capsys.readouterr()
        return Ran(exited.value.code, captured.out, captured.err)

    return run


def hide_module(folder: Path, name: str) -> dict[str, str]:
    """An environment in which ``import name`` fails as if it were not installed."""
    package = folder / "hidden" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n")
    return {"PYTHONPATH": str(folder / "hidden")}


class TestGenerate:
    """A run writes every table, says where, how many and how long, and is quiet when piped."""

    def test_jsonl_run_writes_and_reports(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        out = tmp_path / "generated"
        proc = run_cli(CLI, "data", "generate", "--customers", "120", "--out", str(out), "--format", "jsonl", "--seed", "5")
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""  # no progress bar when stderr is not a terminal
        lines = nonblank(proc.stdout)
        assert re.fullmatch(rf"Generated 120 customers in {re.escape(str(out))} \(jsonl, seed 5, data up to 2026-11-23\) in \d+\.\d s", lines[0])
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        for table in TABLES:
            rows = manifest["tables"][table]["rows"]
            assert any(line.split() == [f"{table}.jsonl", f"{rows:,}", "rows"] for line in lines), (table, lines)
        assert lines[-1].strip() == "manifest.json"
        assert FileDataSource(out).customer_ids() == [f"C{n:07d}" for n in range(1, 121)]

    def test_parquet_is_the_default(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        proc = run_cli(CLI, "data", "generate", "--customers", "30", "--out", str(tmp_path / "p"))
        assert proc.returncode == 0, proc.stderr
        assert {p.suffix for p in (tmp_path / "p").iterdir()} == {".parquet", ".json"}
        assert "(parquet, seed 42," in proc.stdout

    @pytest.mark.slow
    def test_same_seed_same_files_through_the_cli(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        for name in ("a", "b"):
            proc = run_cli(CLI, "data", "generate", "--customers", "50", "--out", str(tmp_path / name), "--format", "json",
                           "--seed", "11", "--chunk-size", "20", "--as-of", "2027-01-15")
            assert proc.returncode == 0, proc.stderr
        first = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
        assert first == {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
        assert json.loads(first["manifest.json"])["as_of"] == "2027-01-15"

    @pytest.mark.slow
    def test_force_writes_into_a_used_folder(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        out = tmp_path / "used"
        assert run_cli(CLI, "data", "generate", "--customers", "10", "--out", str(out), "--format", "jsonl").returncode == 0
        proc = run_cli(CLI, "data", "generate", "--customers", "20", "--out", str(out), "--format", "jsonl", "--force")
        assert proc.returncode == 0, proc.stderr
        assert len(FileDataSource(out).customer_ids()) == 20

    def test_help_lists_the_options(self, run_cli: Callable[..., Any]) -> None:
        proc = run_cli(CLI, "data", "generate", "--help")
        assert proc.returncode == 0
        for option in ("--customers", "--out", "--format", "--seed", "--chunk-size", "--as-of", "--force"):
            assert option in proc.stdout


class TestUsageErrors:
    """Every mistake is one line on stderr and exit 2, before anything is written (in process, but for missing modules)."""

    @pytest.mark.parametrize(
        ("arguments", "mention"),
        [
            (["--customers", "0"], "--customers"),
            (["--customers", "50000001"], "--customers"),
            (["--customers", "ten"], "--customers"),
            (["--format", "csv"], "--format"),
            (["--seed", "-1"], "--seed"),
            (["--chunk-size", "0"], "--chunk-size"),
            (["--as-of", "23/11/2026"], "--as-of"),
        ],
    )
    def test_bad_option_values(self, run_here: Callable[..., Ran], tmp_path: Path, arguments: list[str], mention: str) -> None:
        values = {"--customers": "10", "--out": str(tmp_path / "out")}
        values.update(dict(zip(arguments[::2], arguments[1::2])))
        proc = run_here("data", "generate", *[part for pair in values.items() for part in pair])
        assert_usage_error(proc, mention)
        assert not (tmp_path / "out").exists()

    def test_missing_customers(self, run_here: Callable[..., Ran], tmp_path: Path) -> None:
        assert_usage_error(run_here("data", "generate", "--out", str(tmp_path / "out")), "--customers")

    @pytest.mark.slow
    def test_non_empty_folder_needs_force(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        out = tmp_path / "busy"
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        assert_usage_error(run_cli(CLI, "data", "generate", "--customers", "10", "--out", str(out)), str(out), "--force")
        assert [p.name for p in out.iterdir()] == ["keep.txt"]

    def test_out_is_a_file(self, run_here: Callable[..., Ran], tmp_path: Path) -> None:
        (tmp_path / "f").write_text("x")
        assert_usage_error(run_here("data", "generate", "--customers", "10", "--out", str(tmp_path / "f")), "is a file")

    @pytest.mark.slow
    def test_parquet_without_pyarrow_says_how_to_install_it(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        env = hide_module(tmp_path, "pyarrow")
        proc = run_cli(CLI, "data", "generate", "--customers", "10", "--out", str(tmp_path / "out"), env=env)
        assert_environment_error(proc, "needs pyarrow", "make install", "--format jsonl")
        assert not (tmp_path / "out").exists()
        jsonl = run_cli(CLI, "data", "generate", "--customers", "10", "--out", str(tmp_path / "out"), "--format", "jsonl", env=env)
        assert jsonl.returncode == 0, jsonl.stderr

    def test_without_numpy_says_how_to_install_it(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        proc = run_cli(CLI, "data", "generate", "--customers", "10", "--out", str(tmp_path / "out"), env=hide_module(tmp_path, "numpy"))
        assert_environment_error(proc, "needs numpy", "make install")
