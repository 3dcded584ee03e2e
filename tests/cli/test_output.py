"""Bounded, scriptable output and the CLI conventions (issue 12 items 2 and 6), through the console scripts.

Every listing command: ``--output json`` and ``--output csv`` parse back with every row on stdout (nothing
else there), and the table prints at most ``--show N`` rows then one line for the rest. One real
``cvm process`` run per module leaves approvals, a run folder and decisions to list.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import isolated_cli_env, run_console_script

SAMPLE_IDS = [f"U{n}" for n in range(123, 135)]


class World:
    """A folder with a ledger holding one real run of the sample (two approvals pending) and its run folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.env = isolated_cli_env(folder, f"sqlite:///{folder / 'state' / 'cvm.sqlite3'}")

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_console_script("cvm", *args, env={**self.env, **(env or {})}, cwd=self.folder)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    made = World(tmp_path_factory.mktemp("listing"))
    for dry in ((), ("--dry-run",)):  # two recorded runs; the real one leaves two approvals pending
        done = made.run("process", "--all-customers", "--selector", "rules", *dry)
        assert done.returncode == 0, done.stderr
    return made


# command, and how many rows its json/csv holds (None: any number, at least one)
LISTINGS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "process": (("process", "--all-customers", "--selector", "rules", "--dry-run"), 12),
    "triggers-trigger": (("triggers", "trigger", "--trigger-type", "network_issues", "--all-customers"), None),
    "triggers-process": (("triggers", "process", "--trigger-type", "network_issues", "--all-customers", "--selector", "rules", "--dry-run"), None),
    "list-triggers": (("triggers", "list-triggers"), None),
    "treatments-list": (("treatments", "list"), None),
    "treatments-batch": (("treatments", "batch", "U123,U124,U125", "--selector", "rules", "--dry-run"), 3),
    "approvals-list": (("approvals", "list"), 2),
    "approvals-history": (("approvals", "history"), 2),
    "runs-list": (("runs", "list"), None),
}


def json_rows(name: str, document: Any) -> list[Any]:
    """The rows of a command's JSON: a list, or the list inside its document (decisions, trigger matches)."""
    if name in ("process", "triggers-process", "treatments-batch"):
        assert set(document) >= {"run_id", "generated_at", "summary", "results"}
        return document["results"]
    if name == "triggers-trigger":
        return document["matches"]
    assert isinstance(document, list)
    return document


@pytest.mark.slow
@pytest.mark.parametrize("name", LISTINGS)
def test_json_parses_back_and_the_table_is_bounded(world: World, name: str) -> None:
    args, expected = LISTINGS[name]
    as_json = world.run(*args, "--output", "json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json_rows(name, json.loads(as_json.stdout))  # stdout holds the JSON and nothing else
    assert len(rows) >= 2 and (expected is None or len(rows) == expected), len(rows)
    shown = world.run(*args, "--show", "1")
    assert shown.returncode == 0, shown.stderr
    assert f"... {len(rows) - 1:,} more of {len(rows):,} row(s) not shown" in shown.stdout


@pytest.mark.parametrize("name", ["process", "approvals-list", "runs-list"])
def test_csv_has_a_header_and_every_row(world: World, name: str) -> None:
    args, _ = LISTINGS[name]
    as_csv = world.run(*args, "--output", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    table = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert len(table) >= 3 and all(len(line) == len(table[0]) for line in table)
    if name == "process":
        assert table[0][:2] == ["customer_id", "status"] and [line[0] for line in table[1:]] == SAMPLE_IDS


@pytest.mark.slow
def test_show_all_prints_every_row(world: World) -> None:
    everything = world.run(*LISTINGS["process"][0], "--show", "all")
    assert "not shown" not in everything.stdout
    assert all(f"│ {cid} " in everything.stdout for cid in SAMPLE_IDS)


@pytest.mark.slow
def test_quiet_prints_no_table_and_json_stays_clean(world: World) -> None:
    quiet = world.run("process", "--all-customers", "--selector", "rules", "--dry-run", "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""
    piped = world.run("process", "--all-customers", "--selector", "rules", "--dry-run", "--output", "json", "--quiet")
    assert [r["customer_id"] for r in json.loads(piped.stdout)["results"]] == SAMPLE_IDS
    assert piped.stderr == ""


@pytest.mark.slow
def test_default_bound_is_20_rows(world: World, tmp_path: Path) -> None:
    data = tmp_path / "data30"
    made = world.run("data", "generate", "--customers", "30", "--out", str(data), "--format", "jsonl")
    assert made.returncode == 0, made.stderr
    done = world.run("process", "--all-customers", "--data-dir", str(data), "--selector", "rules", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "... 10 more of 30 row(s) not shown" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("│ C")]  # synthetic ids start with C
    assert len(rows) == 20


def test_show_must_be_a_number_or_all(world: World) -> None:
    bad = world.run("process", "--all-customers", "--dry-run", "--show", "lots")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --show takes a number of rows or 'all', not 'lots'"


@pytest.mark.slow
def test_flows_runs_csv_and_json(world: World) -> None:
    assert json.loads(world.run("flows", "runs", "--output", "json").stdout) == []
    assert world.run("flows", "runs", "--output", "csv").stdout.splitlines()[0].startswith("run_id,flow_id")


# --- conventions ----------------------------------------------------------------------


@pytest.mark.slow
def test_cvm_alone_prints_help(world: World) -> None:
    bare = world.run()
    assert bare.returncode == 0 and bare.stderr == ""
    assert "Usage: cvm" in bare.stdout and "process" in bare.stdout and "error" not in bare.stdout
    group = world.run("flows")
    assert group.returncode == 0 and "Usage: cvm flows" in group.stdout


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_flags(world: World, flag: str) -> None:
    for args in ((flag,), ("process", flag), ("approvals", "list", flag)):
        shown = world.run(*args)
        assert shown.returncode == 0 and "Usage:" in shown.stdout, (args, shown.stderr)


def test_version_flag(world: World) -> None:
    from cvm import __version__

    for flag in ("--version", "-V"):
        shown = world.run(flag)
        assert shown.returncode == 0 and shown.stdout.strip() == __version__


def test_help_shows_one_spelling_choices_and_defaults(world: World) -> None:
    shown = run_console_script("cvm_processor_cli", "--help", env={**world.env, "COLUMNS": "200"}, cwd=world.folder)
    assert shown.returncode == 0, shown.stderr
    for flag in ("--customer-ids", "--all-customers", "--output-file", "--log-level", "--max-workers", "--dry-run", "--show", "--quiet"):
        assert flag in shown.stdout
    for hidden in ("--customer_ids", "--all_customers", "--output_file", "--log_level", "--max_workers", "--dry_run"):
        assert hidden not in shown.stdout
    assert "auto|rules|llm" in shown.stdout
    assert "debug|info|warning|error|critical" in shown.stdout.lower()
    assert "table|json|csv" in shown.stdout
    assert "[default: table]" in shown.stdout and "[default: 20]" in shown.stdout
    group = world.run("--help").stdout
    assert "..." not in group.replace("[ARGS]...", "")  # command descriptions are not cut short


def test_underscore_spellings_still_work(world: World) -> None:
    done = run_console_script(
        "cvm_processor_cli", "--customer_ids", "U124", "--selector", "RULES", "--log_level", "error", "--dry_run",
        "--output_file=underscored.json", env=world.env, cwd=world.folder,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((world.folder / "output" / "underscored.json").read_text())["results"][0]["customer_id"] == "U124"


@pytest.mark.slow
@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o default -F _cvm_completion cvm"), ("zsh", "#compdef cvm"),
                                               ("fish", "complete --command cvm")])
def test_show_completion_prints_the_named_shells_script(world: World, shell: str, marker: str) -> None:
    """The shell named, not one guessed from the parent processes (a zsh user asking for bash, a packaging script)."""
    for args in (("--show-completion", shell), (f"--show-completion={shell}",)):
        script = world.run(*args)
        assert script.returncode == 0 and marker in script.stdout, (args, script.stdout, script.stderr)


def test_completion_script_and_completions(world: World) -> None:
    script = world.run("--show-completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "_CVM_COMPLETE=complete_bash" in script.stdout and "complete " in script.stdout
    words = world.run(env={"_CVM_COMPLETE": "complete_bash", "COMP_WORDS": "cvm process --cust", "COMP_CWORD": "2"})
    assert words.stdout.split() == ["--customer-ids"]
