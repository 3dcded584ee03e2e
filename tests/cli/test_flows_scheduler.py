"""``cvm flows scheduler`` as real processes: two racing over one due time, SIGTERM mid-step then resume, a killed one.

Every case runs the installed console script against one SQLite file; the
clock is ``CVM_NOW`` (10:00 on a Monday), and the flow fires every five minutes,
so 10:00 is due. Waiting for a step to start polls the flow store (no timing
assertion: the timeout only stops a hung test).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cvm.flows.store import FlowStore
from cvm.tools.firing_store import FiringStore
from cvm.tools.telemetry import TelemetryStore

RUN_ID = "sched-fast-20261123T1000Z"
SLOW = """
    flow_id: fast
    trigger:
      schedule: "*/5 * * * *"
    steps:
      - id: load
        agent: data
        action: list_customers
      - id: pause
        agent: flow
        action: wait
        depends_on: [load]
        parameters: {{seconds: {seconds}}}
      - id: again
        agent: data
        action: list_customers
        depends_on: [pause]
"""


@pytest.fixture
def flow_file(tmp_path: Path):
    def write(seconds: float) -> Path:
        folder = tmp_path / "flows"
        folder.mkdir(exist_ok=True)
        path = folder / "fast.yaml"
        path.write_text(textwrap.dedent(SLOW.format(seconds=seconds)), encoding="utf-8")
        return path

    return write


def start(cli_env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "cvm"), "flows", "scheduler", *args], cwd=tmp_path, env=cli_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )


def wait_until(reached: Callable[[], bool], proc: subprocess.Popen[str], what: str, timeout: float = 60) -> None:
    """Poll until ``reached()`` while the process runs (the timeout only guards against a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reached():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"never reached: {what}")


def wait_for_step(db_url: str, step_id: str, status: str, proc: subprocess.Popen[str]) -> None:
    store = FlowStore.from_url(db_url)

    def reached() -> bool:
        run = store.run(RUN_ID)
        return run is not None and run.steps[step_id].status == status

    wait_until(reached, proc, f"step {step_id} {status}")


def statuses(db_url: str) -> dict[str, str]:
    return {sid: s.status for sid, s in FlowStore.from_url(db_url).require_run(RUN_ID).steps.items()}


@pytest.mark.slow
def test_two_schedulers_racing_over_one_due_time_fire_it_once(flow_file, cli_env, tmp_path, db_url):
    flow_file(1)
    procs = [start(cli_env, tmp_path, "--once", "--flows-dir", "flows") for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], results
    fired = [out for _, out, _ in results if f"run {RUN_ID} succeeded" in out]
    assert len(fired) == 1, results
    other = next(out for _, out, _ in results if out not in fired)
    assert "already claimed by another scheduler" in other or "nothing due" in other
    assert [r.run_id for r in FlowStore.from_url(db_url).runs(flow_id="fast")] == [RUN_ID]
    firings = FiringStore.from_url(db_url).firings("fast")
    assert [(f.state, f.run_id) for f in firings] == [("succeeded", RUN_ID)]
    calls = {(r["agent"], r["action"]): r["calls"] for r in TelemetryStore.from_url(db_url).rows(RUN_ID)}
    assert calls[("DataAgent", "list_customers")] == 2  # the run's agent stats, written once by the process that ran it


@pytest.mark.slow
def test_sigterm_mid_step_checkpoints_and_the_next_scheduler_resumes(flow_file, cli_env, tmp_path, db_url, run_cli):
    flow_file(1)
    proc = start(cli_env, tmp_path, "--once", "--flows-dir", "flows")
    wait_for_step(db_url, "pause", "running", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM" in out and "interrupted" in out
    assert statuses(db_url) == {"load": "succeeded", "pause": "running", "again": "pending"}  # the pause was ended, not finished
    assert FiringStore.from_url(db_url).firings("fast")[0].state == "interrupted"

    resumed = run_cli("cvm", "flows", "scheduler", "--once", "--flows-dir", "flows")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed run {RUN_ID} succeeded" in resumed.stdout
    assert " load " not in resumed.stdout and " pause " in resumed.stdout and " again " in resumed.stdout  # only the steps left
    assert statuses(db_url) == {"load": "succeeded", "pause": "succeeded", "again": "succeeded"}
    run = FlowStore.from_url(db_url).require_run(RUN_ID)
    firing = FiringStore.from_url(db_url).firings("fast")[0]
    assert (run.status, run.resumes, firing.state, firing.takeovers) == ("succeeded", 1, "succeeded", 1)


@pytest.mark.slow
def test_a_stop_ends_a_long_pause_at_once(flow_file, cli_env, tmp_path, db_url):
    """A stop waited for a running wait step (up to an hour) before the scheduler could exit."""
    flow_file(300)
    proc = start(cli_env, tmp_path, "--once", "--flows-dir", "flows")
    wait_for_step(db_url, "pause", "running", proc)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the scheduler did not stop within 60 s of a 300 s pause")
    assert proc.returncode == 0, err
    assert f"run {RUN_ID} interrupted" in out and "cvm flows resume" in out
    assert statuses(db_url) == {"load": "succeeded", "pause": "running", "again": "pending"}
    assert FiringStore.from_url(db_url).firings("fast")[0].state == "interrupted"


@pytest.mark.slow
def test_a_killed_scheduler_s_firing_is_taken_over_at_once_on_the_same_host(flow_file, cli_env, tmp_path, db_url, run_cli):
    flow_file(1)
    proc = start(cli_env, tmp_path, "--once", "--flows-dir", "flows")
    wait_for_step(db_url, "pause", "running", proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert FiringStore.from_url(db_url).firings("fast")[0].state == "running"  # claimed, its owner gone

    resumed = run_cli("cvm", "flows", "scheduler", "--once", "--flows-dir", "flows")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed run {RUN_ID} succeeded" in resumed.stdout
    assert statuses(db_url) == {"load": "succeeded", "pause": "succeeded", "again": "succeeded"}
    assert FlowStore.from_url(db_url).require_run(RUN_ID).steps["load"].attempts == 1  # kept, not re-run


def test_a_broken_flow_file_is_reported_and_the_others_still_fire(flow_file, run_cli, tmp_path):
    flow_file(0)
    (tmp_path / "flows" / "broken.yaml").write_text("flow_id: broken\nsteps: []\n", encoding="utf-8")
    result = run_cli("cvm", "flows", "scheduler", "--once", "--flows-dir", "flows")
    assert result.returncode == 1
    assert "broken.yaml" in result.stderr
    assert f"run {RUN_ID} succeeded" in result.stdout


def test_no_flows_folder_is_a_usage_error(run_cli):
    result = run_cli("cvm", "flows", "scheduler", "--once", "--flows-dir", "nowhere")
    assert result.returncode == 2
    assert "--flows-dir nowhere: no such folder" in result.stderr


def test_a_signal_arriving_while_stdout_is_busy_still_stops_the_scheduler(tmp_path, db_url):
    """Python refuses a print from a signal handler that interrupted another print ('reentrant call'): the stop stands."""
    from cvm.cli.flow_scheduler import stop_on_signals
    from cvm.flows.scheduler import Scheduler

    scheduler = Scheduler([], FiringStore.from_url(db_url), FlowStore.from_url(db_url), launcher=None,  # type: ignore[arg-type]
                          clock=lambda: None)  # type: ignore[arg-type,return-value]

    def busy_stdout(_text: str) -> None:
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stdout>'>")

    with stop_on_signals(scheduler, busy_stdout):
        signal.raise_signal(signal.SIGTERM)
    assert scheduler.stopping


def test_status_reads_the_state_database_without_a_config_file(run_cli, tmp_path):
    result = run_cli("cvm", "flows", "scheduler", "--status", env={"CVM_CONFIG": str(tmp_path / "no_such_config.yaml")})
    assert result.returncode == 0, result.stderr
    assert "no firings yet" in result.stdout


@pytest.mark.slow
def test_the_long_running_scheduler_fires_once_picks_up_a_new_flow_and_stops_cleanly_on_sigterm(
    flow_file, cli_env, tmp_path, db_url, run_cli,
):
    path = flow_file(0)
    proc = start(cli_env, tmp_path, "--flows-dir", "flows", "--poll-seconds", "1")
    firings = FiringStore.from_url(db_url)
    wait_until(lambda: [f.state for f in firings.firings("fast")] == ["succeeded"], proc, "the firing succeeded")
    (path.parent / "later.yaml").write_text(path.read_text(encoding="utf-8").replace("flow_id: fast", "flow_id: later"), encoding="utf-8")
    wait_until(lambda: [f.state for f in firings.firings("later")] == ["succeeded"], proc, "the new flow fired")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "a round every 1s" in out and "flows changed: 2 scheduled flow(s)" in out and "scheduler stopped" in out
    assert out.count(f"run {RUN_ID} succeeded") == 1  # the clock (CVM_NOW) stands still: nothing else is due
    status = run_cli("cvm", "flows", "scheduler", "--status")
    assert status.returncode == 0, status.stderr
    assert RUN_ID in status.stdout and "sched-later-20261123T1000Z" in status.stdout
