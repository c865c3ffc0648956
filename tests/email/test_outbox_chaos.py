"""OB1/OB2 for email in the suite: the bench script, smaller, with its own redis-server, SMTP server and workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_component

BENCH = Path(__file__).resolve().parents[2] / "bench" / "email_outbox_chaos.py"


@pytest.mark.worker
def test_email_survives_broker_outage_and_worker_kill():
    require_component(shutil.which("redis-server") is not None, "redis-server")
    # The bench makes a run of its own (folder, database, queue): none of this test run's must leak into it.
    own = ("PARLEY_TEST_RUN", "PARLEY_VAR_DIR", "CELERY_QUEUE", "CHANNEL_LAYER_PREFIX", "PARLEY_EVENT_RELAY")
    env = {key: value for key, value in os.environ.items() if key not in own}
    result = subprocess.run(
        [sys.executable, str(BENCH), "--emails", "5"],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=BENCH.parent,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "all goals met" in result.stdout
