"""`make run`'s script (scripts/run-all.sh) starts web and worker and stops both on a SIGTERM to its group.

A supervisor or CI stops `make run` by signalling its whole process group. Were the worker's pool
processes in that group, they would be killed directly, and one killed while holding the pool's queue
lock left the worker's main process waiting for that lock forever (seen in CI: the run never ended).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.live import BASE_DIR, BIN_DIR, free_port, subprocess_env, wait_for_http

pytestmark = pytest.mark.django_db(transaction=True)


def _session(sid: int) -> list[tuple[int, int, str]]:
    """(pid, process group, command line) of every process in the session."""
    out = subprocess.run(["ps", "-o", "pid=,pgid=,args=", "-s", str(sid)], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        pid, pgid, args = line.split(None, 2)
        rows.append((int(pid), int(pgid), args))
    return rows


def _worker_pool_started(log_path: Path, sid: int) -> bool:
    # The main process and its two pool processes.
    return b"ready." in log_path.read_bytes() and sum("celery" in args for _, _, args in _session(sid)) >= 3


@pytest.mark.parametrize("repeated", [False, True], ids=["once", "again-to-the-script-as-make-passes-it-on"])
def test_run_script_keeps_the_worker_out_of_its_group_and_stops_everything_on_a_sigterm_to_it(tmp_path, repeated):
    port = free_port()
    log_path = tmp_path / "run.log"
    env = subprocess_env(PORT=str(port), PARLEY_VAR_DIR=str(tmp_path / "var"), VENV=str(BIN_DIR.parent))
    # Its own broker and channel layer (files in its folder), so nothing it schedules reaches other tests.
    env.pop("REDIS_URL", None)
    with open(log_path, "wb") as log:
        script = subprocess.Popen(
            ["bash", "scripts/run-all.sh"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=script)
        deadline = time.monotonic() + 60
        while not _worker_pool_started(log_path, script.pid):
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.2)

        celery = [(pid, pgid) for pid, pgid, args in _session(script.pid) if "celery" in args]
        assert len(celery) >= 3
        assert all(pgid != script.pid for _, pgid in celery), _session(script.pid)

        os.killpg(script.pid, signal.SIGTERM)
        if repeated:
            # make, stopped by the same signal, passes it on to the script: the second must not cut the stop short.
            for _ in range(3):
                time.sleep(0.01)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(script.pid, signal.SIGTERM)
        script.wait(timeout=45)
        deadline = time.monotonic() + 10
        while _session(script.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _session(script.pid) == []
        output = log_path.read_text(errors="replace")
        assert "still running" not in output
        assert "Warm shutdown" in output
    finally:
        for pid, _, _ in _session(script.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if script.poll() is None:
            script.kill()
