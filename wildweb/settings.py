"""Django settings, read from the environment.

Defaults give the embedded single-machine setup (see ``wildweb.embedded``). Production sets
``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY``, ``ALLOWED_HOSTS`` and ``MEDIA_ROOT``. Any
variable may instead be given as ``NAME_FILE`` pointing at a file that holds the value
(Docker secrets).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
# Templates and static files ship inside the package, so an installed wheel finds its own.
PACKAGE_DIR = Path(__file__).resolve().parent


def env_str(name: str, default: str = "") -> str:
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    return env_str(name, "1" if default else "0").lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(env_str(name, str(default)))


def env_float(name: str, default: float) -> float:
    return float(env_str(name, str(default)))


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """Django DATABASES entry from ``postgresql://user:pass@host:port/name?host=/socket/dir``."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": query.get("host", [parsed.hostname or ""])[0],
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60),
        "OPTIONS": {
            # A slow query fails loudly instead of hanging a page (Wildbook showed "0 matches").
            "options": f"-c statement_timeout={env_int('DB_STATEMENT_TIMEOUT_MS', 30000)}",
        },
    }


DEBUG = env_bool("DEBUG", default=True)
SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-key" if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# Whether this process started (or found) the embedded Postgres; `make demo` stops it on exit.
EMBEDDED_DATABASE = not os.environ.get("DATABASE_URL") and not os.environ.get("DATABASE_URL_FILE")
if EMBEDDED_DATABASE:
    from wildweb.embedded import postgres_url

    os.environ["DATABASE_URL"] = postgres_url()
DATABASES = {"default": database_from_url(env_str("DATABASE_URL"))}

if not os.environ.get("REDIS_URL") and not os.environ.get("REDIS_URL_FILE"):
    from wildweb.embedded import redis_url

    os.environ["REDIS_URL"] = redis_url()
REDIS_URL = env_str("REDIS_URL")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "catalogue",
    "identification",
    "training",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "wildweb.middleware.StyledNotFoundMiddleware",
]

ROOT_URLCONF = "wildweb.urls"
WSGI_APPLICATION = "wildweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [PACKAGE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "catalogue.context_processors.roles",
                "notifications.context_processors.unread",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [PACKAGE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
# Training exports, feature caches, model files and uploaded import files. No URL maps here:
# they hold server paths, private individuals and exact places.
PRIVATE_ROOT = Path(env_str("PRIVATE_ROOT", str(BASE_DIR / "var" / "private")))
# Photos and thumbnails: on the file system (written under a temporary name, then renamed, so a
# crash never leaves a partial photo), or with OBJECT_STORE_BUCKET in an S3-compatible object
# store (MinIO, S3, ...) that web and workers on other machines share. Either way every photo
# link is the permission-checked /media/ view, never a bucket link.
OBJECT_STORE_BUCKET = env_str("OBJECT_STORE_BUCKET")
PHOTO_STORAGE: dict[str, Any] = {"BACKEND": "wildweb.storage.AtomicFileSystemStorage"}
if OBJECT_STORE_BUCKET:
    PHOTO_STORAGE = {
        "BACKEND": "wildweb.storage.PrivateS3Storage",
        "OPTIONS": {
            "bucket_name": OBJECT_STORE_BUCKET,
            "endpoint_url": env_str("OBJECT_STORE_ENDPOINT_URL") or None,
            "access_key": env_str("OBJECT_STORE_ACCESS_KEY") or None,
            "secret_key": env_str("OBJECT_STORE_SECRET_KEY") or None,
            "region_name": env_str("OBJECT_STORE_REGION") or None,
            "location": env_str("OBJECT_STORE_PREFIX"),
        },
    }
STORAGES = {
    "default": PHOTO_STORAGE,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Uploads: refuse before decoding anything big (decompression bombs, huge files).
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 25 * 1024 * 1024)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 60_000_000)
MAX_PHOTOS_PER_SIGHTING = env_int("MAX_PHOTOS_PER_SIGHTING", 20)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
THUMBNAIL_SIZE = env_int("THUMBNAIL_SIZE", 320)
# Imports: paths named in a dataset file must lie inside the uploaded archive, the dataset's
# own folder, or one of these folders on the server (comma-separated; none by default).
IMPORT_ROOTS = env_list("IMPORT_ROOTS", "")
# An archive whose members add up to more is refused before anything is unpacked.
IMPORT_MAX_UNPACKED_BYTES = env_int("IMPORT_MAX_UNPACKED_BYTES", 4 * 1024**3)
# Public pages round coordinates of sensitive species to this grid (degrees).
SENSITIVE_COORDINATE_GRID = env_float("SENSITIVE_COORDINATE_GRID", 0.1)
# Map tiles; markers show without them (offline field use), so the default is OSM's.
MAP_TILE_URL = env_str("MAP_TILE_URL", "https://tile.openstreetmap.org/{z}/{x}/{y}.png")
MAP_TILE_ATTRIBUTION = env_str("MAP_TILE_ATTRIBUTION", "&copy; OpenStreetMap contributors")

# Throttle counts and failed sign-ins live here, shared by every web process. Keys are
# prefixed so several instances (or test sessions) can share one Redis.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "wildweb"),
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}
# Failed sign-ins (per client address and per username) before the login pages answer 429
# for the rest of the window.
LOGIN_FAILURES_MAX = env_int("LOGIN_FAILURES_MAX", 10)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900)

REST_FRAMEWORK = {
    # Scripts send "Authorization: Token <key>" (keys from the admin or
    # `manage.py drf_create_token USER`); no Basic auth, which would let passwords be guessed.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_THROTTLE_CLASSES": ["wildweb.api.AnonThrottle", "wildweb.api.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON", "120/minute"),
        "user": env_str("API_THROTTLE_USER", "600/minute"),
    },
    # Proxies in front of the web (1 behind docker/nginx.conf); 0 trusts no X-Forwarded-For.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "wildweb.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "wildweb.api.FiniteJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Wildweb API",
    "DESCRIPTION": "Sightings, individuals and identification of wild animals.",
    "VERSION": "0.1.0",
    # Swagger UI from the installed sidecar package: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CELERY_BROKER_URL = REDIS_URL
# No result backend: no caller reads task results (job state lives in the database), and a
# result backend made the web block ~19 s on a Redis outage.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Publishing gives up within about 2 s when Redis is down (the job waits for the sweep);
# workers keep reconnecting for as long as the outage lasts.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Hard time limits (seconds) of every task, of an embedding batch, and of a training run;
# the soft limit comes 30 s (training: 5 min) earlier so the task can record why it stopped.
TASK_TIME_LIMIT = env_int("TASK_TIME_LIMIT", 300)
EMBED_TIME_LIMIT = env_int("EMBED_TIME_LIMIT", 600)  # a batch of 16 photos on a slow CPU
TRAINING_TIME_LIMIT = env_int("TRAINING_TIME_LIMIT", 12 * 3600)
# Choosing a species' ranking method matches every sampled query's shortlist twice (known
# and new), ~30x slower with XFeat than with SIFT.
CALIBRATE_TIME_LIMIT = env_int("CALIBRATE_TIME_LIMIT", 1800)
IMPORT_TIME_LIMIT = env_int("IMPORT_TIME_LIMIT", 3 * 3600)  # planning or storing 100k photos
CELERY_TASK_TIME_LIMIT = TASK_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = TASK_TIME_LIMIT - 30
CELERY_TASK_ANNOTATIONS = {
    "identification.tasks.embedding_jobs_run_task": {
        "time_limit": EMBED_TIME_LIMIT,
        "soft_time_limit": EMBED_TIME_LIMIT - 30,
    },
    # On a fair queue a search's nudge may embed the next batch instead.
    "identification.tasks.identification_next_task": {
        "time_limit": EMBED_TIME_LIMIT,
        "soft_time_limit": EMBED_TIME_LIMIT - 30,
    },
    "training.tasks.dataset_import_task": {
        "time_limit": IMPORT_TIME_LIMIT,
        "soft_time_limit": IMPORT_TIME_LIMIT - 60,
    },
    "training.tasks.training_run_task": {
        "time_limit": TRAINING_TIME_LIMIT,
        "soft_time_limit": TRAINING_TIME_LIMIT - 300,
    },
    "identification.tasks.species_calibrate_task": {
        "time_limit": CALIBRATE_TIME_LIMIT,
        "soft_time_limit": CALIBRATE_TIME_LIMIT - 30,
    },
}
# Redis hands an unacknowledged message to another worker after this long; it must outlast
# the longest task or a run still going would be started twice. A killed worker's jobs do
# not wait for it: the sweep finds them in the database within JOBS_SWEEP_SECONDS.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", TRAINING_TIME_LIMIT + 600),
    "socket_connect_timeout": 2,
}
# The sweep (``wildweb.tasks.jobs_sweep_task``): re-sends jobs never sent (broker down) or
# held by a dead worker every JOBS_SWEEP_SECONDS, and any job still queued JOBS_RESEND_SECONDS
# after it was sent (a message lost inside Redis). Beat runs it; so does every worker start.
JOBS_SWEEP_SECONDS = env_int("JOBS_SWEEP_SECONDS", 30)
JOBS_RESEND_SECONDS = env_int("JOBS_RESEND_SECONDS", 900)
# A photo whose job was started this many times (its worker died each time) fails for good.
JOBS_MAX_ATTEMPTS = env_int("JOBS_MAX_ATTEMPTS", 3)
# A species' ranking method and calibration are chosen again (on ``bulk``) after this many
# expert decisions that set an identity since they were last asked for; a species without
# an import is first calibrated once its experts have decided this many animals.
AUTO_CALIBRATE_DECISIONS = env_int("AUTO_CALIBRATE_DECISIONS", 20)
# An import whose worker has not written a heartbeat for this long (another host's worker
# died while planning or storing) is handed to the next worker.
IMPORT_STALE_SECONDS = env_int("IMPORT_STALE_SECONDS", IMPORT_TIME_LIMIT + 600)
# How often a stored import checks whether its species' photos all have their vectors.
IMPORT_FOLLOW_SECONDS = env_int("IMPORT_FOLLOW_SECONDS", 5)
CELERY_IMPORTS = ("wildweb.tasks",)  # the sweep; the apps' tasks are autodiscovered
CELERY_BEAT_SCHEDULE = {
    "jobs-sweep": {"task": "wildweb.tasks.jobs_sweep_task", "schedule": JOBS_SWEEP_SECONDS},
}
# An uploader with more sightings than this still processing gets the next ones identified
# on the bulk queue, so one volunteer's flood never delays everyone else's first answer.
INTERACTIVE_PENDING_SIGHTINGS = env_int("INTERACTIVE_PENDING_SIGHTINGS", 3)
# Queues served round robin across uploaders (their messages are nudges; the worker takes
# the job whose turn it is); empty: every queue first come, first served.
FAIR_QUEUES = env_list("FAIR_QUEUES", "identify")
if env_str("CELERY_KEY_PREFIX"):
    # Keeps several app instances (e.g. concurrent test sessions) apart on one Redis.
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env_str("CELERY_KEY_PREFIX")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# Production hardening; ``manage.py check --deploy`` with DEBUG=0 must be clean.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
# The header alone commits nothing; only submitting the domain to the preload list does.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# Every photo URL goes through a permission-checked view. With SERVE_MEDIA on, Django streams
# the file (the embedded setup); off, the view answers with MEDIA_PROXY_HEADER and the proxy
# sends the file: nginx's X-Accel-Redirect to MEDIA_PROXY_PREFIX + name (an `internal`
# location), or Apache's/lighttpd's X-Sendfile with the file's absolute path.
SERVE_MEDIA = env_bool("SERVE_MEDIA", default=True)
MEDIA_PROXY_HEADER = env_str("MEDIA_PROXY_HEADER", "X-Accel-Redirect")
if MEDIA_PROXY_HEADER not in {"X-Accel-Redirect", "X-Sendfile"}:
    raise RuntimeError("MEDIA_PROXY_HEADER must be X-Accel-Redirect or X-Sendfile")
MEDIA_PROXY_PREFIX = env_str("MEDIA_PROXY_PREFIX", "/protected-media/")

# E-mail: printed to the console unless EMAIL_HOST names an SMTP server.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=True)
# A slow mail server delays a notification, never a page for long.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Wildweb <wildweb@localhost>")
# E-mails go out from a worker; with the server down the worker tries again, pausing longer
# each time up to this many seconds, this many times (the defaults cover about an hour).
EMAIL_RETRY_MAX_SECONDS = env_int("EMAIL_RETRY_MAX_SECONDS", 600)
EMAIL_MAX_RETRIES = env_int("EMAIL_MAX_RETRIES", 10)
# Links in e-mails start with this.
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

# Agreeing volunteer votes that make a candidate a suggestion shown to experts.
VOTES_FOR_SUGGESTION = env_int("VOTES_FOR_SUGGESTION", 3)
