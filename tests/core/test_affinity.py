"""WEB_CPUS pins a web process to chosen cores (core.affinity)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.affinity import parse_cpus, pin_from_environment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux pins processes to CPUs")


def test_numbers_and_ranges_are_read():
    assert parse_cpus("1") == {1}
    assert parse_cpus("0,2") == {0, 2}
    assert parse_cpus(" 2-4 , 7") == {2, 3, 4, 7}


@pytest.mark.parametrize("spec", ["one", "1,", "3-1", "-1", "1-x", "1.5"])
def test_anything_else_is_refused_with_the_setting_named(spec):
    with pytest.raises(ImproperlyConfigured, match="WEB_CPUS"):
        parse_cpus(spec)


def test_unset_or_empty_leaves_the_process_to_the_os():
    assert pin_from_environment({}) is None
    assert pin_from_environment({"WEB_CPUS": "  "}) is None


@needs_affinity
def test_a_cpu_this_process_may_not_use_is_refused():
    missing = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(ImproperlyConfigured, match="not available"):
        pin_from_environment({"WEB_CPUS": str(missing)})


@needs_affinity
def test_the_web_process_and_its_threads_run_on_the_named_cpu_only():
    cpu = max(os.sched_getaffinity(0))
    script = (
        "import os, threading, json\n"
        "import config.asgi\n"
        "seen = {}\n"
        "def look(): seen['thread'] = sorted(os.sched_getaffinity(0))\n"
        "t = threading.Thread(target=look); t.start(); t.join()\n"
        "tasks = [sorted(os.sched_getaffinity(int(tid))) for tid in os.listdir('/proc/self/task')]\n"
        "print(json.dumps({'main': sorted(os.sched_getaffinity(0)), 'thread': seen['thread'], 'tasks': tasks}))\n"
    )
    env = {**os.environ, "WEB_CPUS": str(cpu), "DJANGO_SETTINGS_MODULE": "config.settings_test"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["main"] == [cpu]
    assert seen["thread"] == [cpu]
    assert all(task == [cpu] for task in seen["tasks"])


def test_a_bad_value_stops_the_web_process_at_start():
    env = {**os.environ, "WEB_CPUS": "first", "DJANGO_SETTINGS_MODULE": "config.settings_test"}
    result = subprocess.run(
        [sys.executable, "-c", "import config.asgi"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "WEB_CPUS='first'" in result.stderr
