"""The test override: the real settings plus what only a test run needs.

Each test run gets its own folder, queue and channel-layer prefix, so two runs
on one machine never share a database file, broker folder or Redis keys. They
are put into the environment, so the daphne and Celery subprocesses a test
starts inherit them.
"""

from __future__ import annotations

import os

_RUN = os.environ.setdefault("PARLEY_TEST_RUN", str(os.getpid()))
os.environ.setdefault("SECRET_KEY", "parley-test-secret-key-only-for-the-test-suite-0123456789")
os.environ.setdefault(
    "PARLEY_VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test", f"run-{_RUN}")
)
os.environ.setdefault("CELERY_QUEUE", f"parley-test-{_RUN}")
os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"parley-test-{_RUN}")
# In-process consumer tests run each on their own event loop: no relay task there.
# The daphne subprocesses of browser tests turn it on (tests/live.py).
os.environ.setdefault("PARLEY_EVENT_RELAY", "0")
# Every test client comes from 127.0.0.1: the suite's own logins and chats must not trip the limits
# (tests of the limits set small ones).
for _name in ("LOGIN", "LOGIN_USER", "CHAT_PAGE", "CHAT_START", "WEBHOOK"):
    os.environ.setdefault(f"RATE_LIMIT_{_name}", "100000/60")

from config.settings import *  # noqa: E402, F403
from config.settings import DATABASES, VAR_DIR  # noqa: E402

# Browser and worker tests run daphne and Celery in subprocesses on plain HTTP.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Subprocesses (daphne, celery worker) must see the test database, so SQLite
# tests use a file rather than the default in-memory database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{_RUN}"}
