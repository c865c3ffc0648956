"""The test override: the real settings plus what only a test run needs."""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "parley-test-secret-key-only-for-the-test-suite-0123456789")
os.environ.setdefault("PARLEY_VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))

from config.settings import *  # noqa: F403
from config.settings import DATABASES, VAR_DIR

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
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "parley-test")
