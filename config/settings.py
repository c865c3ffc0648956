"""Parley settings: one module, driven by environment variables.

Every variable is documented in README.md ("Configuration"). With nothing set,
Parley runs embedded: SQLite, the in-memory channel layer and a filesystem
Celery broker that needs no server.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("PARLEY_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

# A development key is only acceptable while DEBUG is on; production must set one.
_DEV_SECRET_KEY = "django-insecure-parley-development-key-never-use-in-production"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "core",
    "contacts",
    "conversations",
    "agents",
    "channels_app.webchat",
    "channels_app.voice",
    "channels_app.sms",
    "channels_app.email",
    "supervisor",
    "anymail",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "core.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'parley.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL lets the web and worker processes read while one writes; IMMEDIATE
    # transactions take the write lock up front instead of failing on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    # A statement run again and again on a connection (every chat message's reads and writes) is prepared on the
    # server after DATABASE_PREPARE_THRESHOLD runs, so PostgreSQL plans it once per connection, not on every run:
    # a timeline entry's ten-table read took 5 ms to plan and 0.3 ms to run. Needs server-side parameter binding.
    # Behind pgbouncer in transaction mode: pgbouncer 1.21 or newer with max_prepared_statements set, or 0 here
    # (no prepared statements, parameters bound in the client as Django does by default).
    PREPARE_THRESHOLD = env.int("DATABASE_PREPARE_THRESHOLD", default=5)
    if PREPARE_THRESHOLD > 0:
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault("server_side_binding", True)
        DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", PREPARE_THRESHOLD)
# Long-lived threads (a web process's HTTP and websocket threads, Celery workers) keep their connection: opening one
# costs a PostgreSQL backend fork, or on SQLite the PRAGMAs and, for the last one closed, a WAL checkpoint.
# HTTP requests run on a pool of HTTP_THREADS threads per web process, which keep theirs too (core.db).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=600))
# Threads running HTTP requests (middleware, view, templates) in each web process (core.db).
HTTP_THREADS = env.int("HTTP_THREADS", default=8)
# Threads running the websocket consumers' database work in each web process (core.db). SQLite writes one
# transaction at a time, so more threads there only wait for its lock and for the interpreter's (GIL): one
# thread carried 10 % more messages per second than four (bench/realtime.py, RT1). PostgreSQL overlaps the
# threads' round trips.
WEBSOCKET_DB_THREADS = env.int(
    "WEBSOCKET_DB_THREADS", default=1 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 4
)
# Past this many calls waiting for those threads, sockets' new messages are refused with "send again".
WEBSOCKET_DB_MAX_PENDING = env.int("WEBSOCKET_DB_MAX_PENDING", default=64)
# ... and while the calls waiting for a thread would wait longer than this.
WEBSOCKET_DB_MAX_WAIT_MS = env.int("WEBSOCKET_DB_MAX_WAIT_MS", default=50)
# ...and while the events waiting for the channel layer in this process are more than this (core.realtime).
WEBSOCKET_MAX_PUBLISH_BACKLOG = env.int("WEBSOCKET_MAX_PUBLISH_BACKLOG", default=200)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and Celery broker --------------------------------
REDIS_URL = env.str("REDIS_URL", default="")

# "redis-pubsub": channels_redis's pub/sub layer, chosen by measurement (docs/PERFORMANCE.md, RT1: 1.5-1.7x the
# core layer's throughput at saturation), and without the core layer's group expiry, which silently drops a
# socket open longer than a day from its groups; "redis": the core layer (lists with a capacity per channel).
CHANNEL_LAYER = env.str("CHANNEL_LAYER", default="redis-pubsub")
if REDIS_URL and CHANNEL_LAYER == "redis-pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNEL_LAYER_PREFIX", default="parley")},
        }
    }
elif REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": env.str("CHANNEL_LAYER_PREFIX", default="parley"),
                "capacity": 1000,
                "expiry": 60,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "core.layers.SweepingInMemoryChannelLayer"}}

# The cache holds rate-limit counters; with Redis every process shares them.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CHANNEL_LAYER_PREFIX", default="parley"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# With the in-memory layer, the web process forwards Celery workers' events (core.realtime).
EVENT_RELAY = env.bool("PARLEY_EVENT_RELAY", default=True)

# --- Celery ------------------------------------------------------------------
CELERY_BROKER_DIR = Path(env.str("CELERY_BROKER_DIR", default=str(VAR_DIR / "broker")))
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A task not acknowledged within this time is redelivered (acks_late).
        "visibility_timeout": 3600,
    }
else:
    # kombu's filesystem transport, writing each message whole before a worker can see it (core.fs_broker,
    # registered under this name in config/celery.py).
    CELERY_BROKER_URL = "parleyfs://localhost//"
    for _folder in ("queue", "control", "processed"):
        (CELERY_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="parley")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Periodic work; later issues add the outbox sweep, inbound polling and timers.
ROUTING_SWEEP_SECONDS = env.float("ROUTING_SWEEP_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "core.tasks.worker_heartbeat", "schedule": 30.0},
    # Safety nets behind the per-offer and per-agent timers (a lost countdown task).
    "routing-sweep": {"task": "conversations.tasks.routing_sweep", "schedule": ROUTING_SWEEP_SECONDS},
    "acw-sweep": {"task": "agents.tasks.agents_acw_sweep", "schedule": 10.0},
    "webchat-inactivity": {"task": "channels_app.webchat.tasks.chat_inactivity_sweep", "schedule": 15.0},
    "email-imap-poll": {
        "task": "channels_app.email.tasks.imap_poll_all",
        "schedule": env.float("EMAIL_IMAP_POLL_SECONDS", default=60.0),
    },
    "outbox-sweep": {
        "task": "conversations.tasks.outbox_sweep",
        "schedule": env.float("OUTBOX_SWEEP_SECONDS", default=10.0),
    },
    # Behind the task each inbound SMS webhook queues (a broker or worker that was down).
    "sms-inbound-sweep": {
        "task": "channels_app.sms.tasks.sms_inbound_sweep",
        "schedule": env.float("SMS_INBOUND_SWEEP_SECONDS", default=10.0),
    },
}
# Celery looks the (unused) result backend up once per thread otherwise, i.e. once per HTTP request under ASGI.
CELERY_RESULT_BACKEND_THREAD_SAFE = True

# Inbound SMS (channels_app.sms): tries of one SMS before it is marked failed and the sender's later SMS go on
# without it; the first retry's wait, doubled for each further one; how long a worker may hold a row before
# the sweep presumes it dead; how long the sweep leaves a fresh row to its own task.
SMS_INBOUND_MAX_ATTEMPTS = env.int("SMS_INBOUND_MAX_ATTEMPTS", default=4)
SMS_INBOUND_RETRY_SECONDS = env.float("SMS_INBOUND_RETRY_SECONDS", default=2.0)
SMS_INBOUND_LEASE_SECONDS = env.float("SMS_INBOUND_LEASE_SECONDS", default=60.0)
SMS_INBOUND_SWEEP_GRACE_SECONDS = env.float("SMS_INBOUND_SWEEP_GRACE_SECONDS", default=10.0)

# Outbound SMS/email (conversations.outbox): tries per message, backoff between tries, and how long a
# worker may hold a message before the sweep presumes it dead and hands the message to another.
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=6)
OUTBOX_BACKOFF_SECONDS = env.float("OUTBOX_BACKOFF_SECONDS", default=5.0)
OUTBOX_BACKOFF_MAX_SECONDS = env.float("OUTBOX_BACKOFF_MAX_SECONDS", default=300.0)
OUTBOX_LEASE_SECONDS = env.float("OUTBOX_LEASE_SECONDS", default=120.0)
OUTBOX_SWEEP_GRACE_SECONDS = env.float("OUTBOX_SWEEP_GRACE_SECONDS", default=15.0)
OUTBOX_SWEEP_BATCH = 500

# --- Auth ------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The stock model backend, loading each request's user together with its agent profile (one query).
AUTHENTICATION_BACKENDS = ["core.auth.ParleyModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "desktop"
LOGOUT_REDIRECT_URL = "login"
# The state an agent enters when logging in to the desktop (DOMAIN.md: Ready on login).
AGENT_STATE_ON_LOGIN = env.str("AGENT_STATE_ON_LOGIN", default="ready")

# --- Internationalisation ------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("de", _("German"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
DEFAULT_PHONE_REGION = env.str("DEFAULT_PHONE_REGION", default="DE")

# --- Static and media -----------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# daphne serves static files itself unless a proxy does it (SERVE_STATIC=false).
SERVE_STATIC = env.bool("SERVE_STATIC", default=True)
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# --- Email -------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Parley <support@parley.invalid>")

# --- Channels: where the world reaches us ----------------------------------------
# The public address of this deployment as customers and providers see it (behind a proxy: the proxy's).
# Provider webhooks are verified against it (Twilio signs the full URL) and links in emails use it.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- SMS (channels_app.sms) ----------------------------------------------------------
# Accounts and numbers are configured in the admin; these are limits and timeouts only.
SMS_PROVIDER_TIMEOUT_SECONDS = env.float("SMS_PROVIDER_TIMEOUT_SECONDS", default=10.0)
SMS_MAX_CHARS = env.int("SMS_MAX_CHARS", default=1600)  # Twilio's limit for one message's body
SMS_MMS_MAX_BYTES = env.int("SMS_MMS_MAX_BYTES", default=5 * 1024 * 1024)

# --- Email (channels_app.email) ------------------------------------------------------
# Our Message-IDs are <...@EMAIL_MESSAGE_ID_DOMAIN>; replies are threaded by them.
EMAIL_MESSAGE_ID_DOMAIN = env.str("EMAIL_MESSAGE_ID_DOMAIN", default="parley.invalid")
ANYMAIL = {"WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default="")}
# Mailgun signs inbound webhooks with this key (HMAC-SHA256); without it /email/inbound/mailgun/ is closed (404).
ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"] = env.str("MAILGUN_WEBHOOK_SIGNING_KEY", default="")
# Service queuing new email conversations that arrive without a mailbox of their own (webhooks); empty: the first
# active service that accepts email.
EMAIL_INBOUND_SERVICE = env.str("EMAIL_INBOUND_SERVICE", default="")
EMAIL_SEND_TIMEOUT = env.float("EMAIL_SEND_TIMEOUT", default=20.0)
EMAIL_IMAP_TIMEOUT = env.float("EMAIL_IMAP_TIMEOUT", default=30.0)
EMAIL_IMAP_BATCH = env.int("EMAIL_IMAP_BATCH", default=100)
EMAIL_MAX_ATTACHMENTS = env.int("EMAIL_MAX_ATTACHMENTS", default=10)
EMAIL_MAX_ATTACHMENT_BYTES = env.int("EMAIL_MAX_ATTACHMENT_BYTES", default=20 * 1024 * 1024)
EMAIL_MAX_BODY_CHARS = env.int("EMAIL_MAX_BODY_CHARS", default=100_000)

# --- Voice (channels_app.voice) ------------------------------------------------------
# STUN/TURN servers handed to browsers; none by default (calls on one network need none).
VOICE_STUN_URLS = env.list("VOICE_STUN_URLS", default=[])
VOICE_TURN_URLS = env.list("VOICE_TURN_URLS", default=[])
# With a TURN secret the server hands out short-lived TURN credentials (the TURN REST scheme).
VOICE_TURN_SECRET = env.str("VOICE_TURN_SECRET", default="")
VOICE_TURN_TTL_SECONDS = env.int("VOICE_TURN_TTL_SECONDS", default=3600)
VOICE_RING_TIMEOUT_SECONDS = env.int("VOICE_RING_TIMEOUT_SECONDS", default=45)
# Signalling frames (SDP with video is ~10 KB) and how many one socket may send per 10 s (ICE bursts).
VOICE_MAX_FRAME_BYTES = env.int("VOICE_MAX_FRAME_BYTES", default=32 * 1024)
VOICE_RATE_LIMIT_PER_10S = env.int("VOICE_RATE_LIMIT_PER_10S", default=200)
# Safety net behind the per-call ring timer (a lost countdown task).
CELERY_BEAT_SCHEDULE["voice-ring-sweep"] = {
    "task": "channels_app.voice.tasks.calls_ring_sweep",
    "schedule": env.float("VOICE_RING_SWEEP_SECONDS", default=15.0),
}

# --- Security ----------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=SECURE_HSTS_SECONDS > 0)

# Rate limits per client address, "<requests>/<seconds>" ("0/1" turns one off). Behind a proxy set
# PROXY_TRUSTED_HOPS to the number of proxies that append to X-Forwarded-For, so the client's address is used.
PROXY_TRUSTED_HOPS = env.int("PROXY_TRUSTED_HOPS", default=0)
RATE_LIMIT_LOGIN = env.str("RATE_LIMIT_LOGIN", default="20/300")
RATE_LIMIT_LOGIN_USER = env.str("RATE_LIMIT_LOGIN_USER", default="10/300")
RATE_LIMIT_CHAT_PAGE = env.str("RATE_LIMIT_CHAT_PAGE", default="120/60")
RATE_LIMIT_CHAT_START = env.str("RATE_LIMIT_CHAT_START", default="10/60")
RATE_LIMIT_WEBHOOK = env.str("RATE_LIMIT_WEBHOOK", default="1200/60")

# Web chat limits.
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=4000)
CHAT_MAX_ATTACHMENT_BYTES = env.int("CHAT_MAX_ATTACHMENT_BYTES", default=10 * 1024 * 1024)
# Messages and typing signals one chat socket may send per 10 seconds.
CHAT_RATE_LIMIT_PER_10S = env.int("CHAT_RATE_LIMIT_PER_10S", default=20)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# Largest websocket frame a consumer accepts from a client, in bytes.
WEBSOCKET_MAX_FRAME_BYTES = env.int("WEBSOCKET_MAX_FRAME_BYTES", default=16 * 1024)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
