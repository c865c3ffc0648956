"""The web process keeps what it loaded at start out of the cycle collector's full passes (config.asgi)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_what_the_web_process_loads_at_start_is_frozen_and_later_objects_are_collected():
    script = (
        "import gc, json\n"
        "import config.asgi\n"
        "frozen = gc.get_freeze_count()\n"
        "class Node: pass\n"
        "a, b = Node(), Node()\n"
        "a.other, b.other = b, a\n"
        "del a, b\n"
        "print(json.dumps({'frozen': frozen, 'tracked': len(gc.get_objects()), 'collected': gc.collect()}))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # Django, the apps and the routing: tens of thousands of objects, against a few hundred left tracked.
    assert seen["frozen"] > 20_000
    assert seen["tracked"] < seen["frozen"] / 10
    # A cycle made afterwards is still found and freed.
    assert seen["collected"] >= 2
