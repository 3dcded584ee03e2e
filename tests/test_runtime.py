"""The composition root: what ``build_runtime`` hands the agents it builds."""

from __future__ import annotations

from pathlib import Path

import yaml
from structlog.testing import capture_logs

from cvm.runtime import RunOptions, build_runtime
from cvm.utils.settings import RuntimeSettings
from tests.conftest import CONFIG, SAMPLE, RecordingProgress


def test_the_progress_given_to_the_runtime_reaches_the_batch_path(tmp_path: Path) -> None:
    """`cvm process` passes its terminal bar once, to build_runtime; a batch run must report through it."""
    progress = RecordingProgress()
    options = RunOptions(
        data_dir=SAMPLE, config_path=CONFIG, custom_treatments_path=tmp_path / "none.json",
        db_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}", selector="rules", as_of="2026-11-23T10:00:00+00:00",
    )
    runtime = build_runtime(options, RuntimeSettings(_env_file=None), progress=progress)
    decided = runtime.decider(notify=lambda _line: None).decide(None, batch=True)
    assert decided.path == "batch"
    names = [stage[0] for stage in progress.stages]
    assert names[:2] == ["loading tables", "features"] and "committing" in names
    assert all(done == total for _, total, done in progress.stages if total is not None), progress.stages


def test_an_exemption_naming_no_treatment_is_warned_about(make_runtime, tmp_path: Path) -> None:
    """``daily_cap_exempt: [service_recovry]`` (a typo) exempted nothing, silently."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["policies"]["contact"]["daily_cap_exempt"] = ["service_recovry", "retention_email"]
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with capture_logs() as logs:
        make_runtime(config_path=path)
    (warning,) = [e for e in logs if e["event"] == "daily_cap_exempt_names_no_treatment"]
    assert (warning["log_level"], warning["ids"]) == ("warning", ["service_recovry"])
    with capture_logs() as logs:
        make_runtime()
    assert not [e for e in logs if e["event"] == "daily_cap_exempt_names_no_treatment"]
