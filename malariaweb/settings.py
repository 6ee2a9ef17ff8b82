"""Settings of the malaria diagnosis platform: one module, every value from the environment.

The embedded default (no variables set, DEBUG=true) runs on SQLite, a filesystem Celery broker and
local files under var/. Production sets DATABASE_URL (PostgreSQL), CELERY_BROKER_URL (Redis),
SECRET_KEY, ALLOWED_HOSTS and optionally S3 storage. See README.md, "Configuration".
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from malariaweb.env import env_bool, env_float, env_int, env_list, env_str
from malariaweb.observability import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MALARIA_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Production needs SECRET_KEY (or SECRET_KEY_FILE); "
            "set DEBUG=true for the embedded development default."
        )
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production-0123456789"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is not set (comma-separated host names).")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "classifier",
    "cases",
    "training",
    "integrations",
]

MIDDLEWARE = [
    # Request id, access log and request metrics first; probes (/healthz, /readyz, /metrics) are
    # answered next, before host validation and the HTTPS redirect (malariaweb.health).
    "malariaweb.observability.RequestIdMiddleware",
    "malariaweb.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "malariaweb.headers.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Refuses a request by its Content-Length (UPLOAD_MAX_REQUEST_MB) before CSRF or DRF read it.
    "cases.intake.limits.UploadSizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "malariaweb.urls"
WSGI_APPLICATION = "malariaweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "cases.context_processors.navigation",
                "cases.review.context.review_badges",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite is written by the web process and a worker at once: WAL lets readers run beside the
# writer, IMMEDIATE transactions take the write lock up front (no deadlocking upgrade), and the
# timeout makes a writer wait for the lock instead of failing with "database is locked".
_SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
}
_database_url = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    _database = dj_database_url.parse(_database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))
except Exception as exc:  # dj-database-url raises several types for a malformed URL
    raise ImproperlyConfigured(f"DATABASE_URL={_database_url!r} is not a valid URL: {exc}") from exc
if not _database.get("ENGINE"):
    raise ImproperlyConfigured(f"DATABASE_URL={_database_url!r} names an unknown database.")
if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database.setdefault("OPTIONS", {}).update(_SQLITE_OPTIONS)
    # A file, not memory: integration tests start worker processes that must share it. One file
    # per test process, so that two test runs on one machine do not overwrite each other's.
    _database["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
# After this many failed log-ins for one user name within the window (and since its last
# successful log-in), further attempts for that name are refused until the window has passed.
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5, minimum=0)  # 0 = never lock
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
# Failed log-ins (any user names) from one client address within the window before that address is
# refused. The address is REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT reverse proxies the entry those
# proxies appended to X-Forwarded-For (0 = no proxy: X-Forwarded-For is ignored, it can be forged).
LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("LOGIN_MAX_FAILURES_PER_ADDRESS", 50, minimum=0)
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
# The audit trail's events are keyed (HMAC-SHA256) with this secret, kept out of the database, so
# whoever can write the database cannot recompute a rewritten chain; AUDIT_HMAC_KEY_FILE reads it
# from a file. Signed checkpoints of the chain head go to storage every AUDIT_CHECKPOINT_MINUTES.
AUDIT_HMAC_KEY = env_str("AUDIT_HMAC_KEY")
AUDIT_CHECKPOINT_MINUTES = env_int("AUDIT_CHECKPOINT_MINUTES", 15, minimum=1)
LOGIN_REDIRECT_URL = "case_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static and uploaded files --------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Uploaded images are private: there is no MEDIA_URL route; every file goes through a view that
# checks the requester's right to see its case (cases.intake.views.image_file).
MEDIA_URL = "/private-media-not-served/"

STORAGE_BACKEND = env_str("STORAGE_BACKEND", "local")
if STORAGE_BACKEND == "local":
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
elif STORAGE_BACKEND == "s3":
    _bucket = env_str("AWS_STORAGE_BUCKET_NAME")
    if not _bucket:
        raise ImproperlyConfigured("STORAGE_BACKEND=s3 needs AWS_STORAGE_BUCKET_NAME.")
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _bucket,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    raise ImproperlyConfigured(f"STORAGE_BACKEND={STORAGE_BACKEND!r}: use 'local' or 's3'.")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_MANIFEST_STRICT = False

# --- Upload limits --------------------------------------------------------------------------
UPLOAD_MAX_FILE_MB = env_int("UPLOAD_MAX_FILE_MB", 25, minimum=1)
UPLOAD_MAX_PIXELS = env_int("UPLOAD_MAX_PIXELS", 40_000_000, minimum=1)
UPLOAD_MAX_FILES = env_int("UPLOAD_MAX_FILES", 2000, minimum=1)
UPLOAD_ZIP_MAX_ENTRIES = env_int("UPLOAD_ZIP_MAX_ENTRIES", 5000, minimum=1)
UPLOAD_ZIP_MAX_TOTAL_MB = env_int("UPLOAD_ZIP_MAX_TOTAL_MB", 2048, minimum=1)
UPLOAD_ZIP_MAX_RATIO = env_int("UPLOAD_ZIP_MAX_RATIO", 200, minimum=1)
# One request (all its files together): refused by its Content-Length before a byte is read.
UPLOAD_MAX_REQUEST_MB = env_int("UPLOAD_MAX_REQUEST_MB", 1024, minimum=1)
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES
# Form fields other than files (never large here). A request whose body is larger than
# FILE_UPLOAD_MAX_MEMORY_SIZE has all its files streamed to temporary files on disk
# (UPLOAD_TEMP_DIR, default the system's), never into memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_TEMP_DIR = env_str("UPLOAD_TEMP_DIR") or None

# --- Celery ---------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=5)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540, minimum=1)
# A message held by a killed worker comes back after the visibility timeout (Redis): it must
# exceed the hard time limit, or a healthy long task would be delivered twice.
CELERY_VISIBILITY_TIMEOUT = env_int(
    "CELERY_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 60, minimum=1
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # The filesystem transport polls its folder; the default 1 s would idle the worker
        # between batches (a worker fetches its next batch only after finishing one).
        "polling_interval": 0.05,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        # Look for messages of dead workers every 10 s (kombu's default: every 100 s).
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "malaria")
ANALYSIS_BATCH_SIZE = env_int("ANALYSIS_BATCH_SIZE", 64, minimum=1)
# The worker's memory budget (cases.analysis.budgets): pixels it decodes per image (checked in
# the header first) and cells one field may yield before the field is refused as implausible.
ANALYSIS_MAX_PIXELS = env_int("ANALYSIS_MAX_PIXELS", UPLOAD_MAX_PIXELS, minimum=1)
FIELD_MAX_CELLS = env_int("FIELD_MAX_CELLS", 1000, minimum=1)
# A starting worker re-sends images left queued/processing (lost messages, killed workers).
ANALYSIS_REQUEUE_ON_START = env_bool("ANALYSIS_REQUEUE_ON_START", True)
# Recovery without a manual step (cases.analysis.queue.analysis_sweep, run by Celery beat every
# ANALYSIS_SWEEP_INTERVAL seconds): images never sent (broker down) are sent; images a worker
# has not touched for ANALYSIS_STALE_AFTER seconds (it died) are sent again; queued images sent
# more than ANALYSIS_REQUEUE_AFTER seconds ago while the broker's queue is empty (message lost)
# are sent again. An image that stopped a worker ANALYSIS_MAX_ATTEMPTS times fails instead.
ANALYSIS_SWEEP_INTERVAL = env_int("ANALYSIS_SWEEP_INTERVAL", 30, minimum=1)
ANALYSIS_STALE_AFTER = env_int("ANALYSIS_STALE_AFTER", 120, minimum=1)
ANALYSIS_REQUEUE_AFTER = env_int("ANALYSIS_REQUEUE_AFTER", 60, minimum=1)
ANALYSIS_MAX_ATTEMPTS = env_int("ANALYSIS_MAX_ATTEMPTS", 3, minimum=1)
# Storage or database trouble: retried with a back-off of 2, 4, 8 ... seconds up to the maximum
# (12 retries: about 15-30 minutes in all) before the images fail with a readable reason.
ANALYSIS_MAX_RETRIES = env_int("ANALYSIS_MAX_RETRIES", 12, minimum=0)
ANALYSIS_RETRY_BACKOFF_MAX = env_int("ANALYSIS_RETRY_BACKOFF_MAX", 300, minimum=1)
# An unreachable broker must not hold an upload's response for long: the sweep sends it later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0)
# Periodic tasks, run by `celery -A malariaweb beat` (one beat process per deployment).
CELERY_BEAT_SCHEDULE = {
    "analysis-sweep": {
        "task": "cases.analysis.sweep",
        "schedule": float(ANALYSIS_SWEEP_INTERVAL),
        "options": {"expires": float(ANALYSIS_SWEEP_INTERVAL)},
    },
    "audit-checkpoint": {
        "task": "cases.audit.write_checkpoint",
        "schedule": AUDIT_CHECKPOINT_MINUTES * 60,
    },
    "prune-login-failures": {
        "task": "cases.audit.prune_login_failures",
        "schedule": LOGIN_LOCKOUT_MINUTES * 60,
    },
}

# --- Review ---------------------------------------------------------------------------------
# Four-eyes rule: the reviewer who signs a case off must not be the user who uploaded it.
REVIEW_FOUR_EYES = env_bool("REVIEW_FOUR_EYES", True)
# Reports of cases with more images than this are built by a worker, then offered for download.
REPORT_DIRECT_MAX_IMAGES = env_int("REPORT_DIRECT_MAX_IMAGES", 200, minimum=1)
# Images whose probability lies within this distance of the threshold are flagged "uncertain".
ANALYSIS_UNCERTAIN_MARGIN = env_float("ANALYSIS_UNCERTAIN_MARGIN", 0.15)
# Counted cells a case should reach before its parasitemia is read (NIH Malaria Screener's guide:
# about 1,000 red cells on a thin smear); the field view and case page show progress toward it.
TARGET_CELL_COUNT = env_int("TARGET_CELL_COUNT", 1000, minimum=1)

# --- REST framework -------------------------------------------------------------------------
# Token first: a request without credentials then answers 401 with WWW-Authenticate: Token.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "cases.api.limits.Pagination",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 100, minimum=1),
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["cases.api.limits.AnonThrottle", "cases.api.limits.UserThrottle"],
    "EXCEPTION_HANDLER": "cases.api.problems.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "cases.api.schema.ProblemAutoSchema",
}
# Requests per client (user, or IP address when anonymous); over it the API answers 429 with
# Retry-After. DRF's format: "<count>/<second|minute|hour|day>".
API_THROTTLE_RATES = {
    "user": env_str("API_THROTTLE_USER", "6000/minute"),
    "anon": env_str("API_THROTTLE_ANON", "300/minute"),
}
# Webhooks (integrations/): a failed delivery is retried after 30 s, 60 s, 120 s, ... until
# WEBHOOK_MAX_ATTEMPTS attempts, then marked failed (replayable from the admin).
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 6, minimum=1)
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 30, minimum=1)
SPECTACULAR_SETTINGS = {
    "TITLE": "Malaria diagnosis platform API",
    "DESCRIPTION": (
        "Patients, cases, uploads, analysis results, review, sign-off, reports, audit and "
        "models. Authenticate with `Authorization: Token <key>` (POST /api/v1/auth/token/) or "
        "a session. Errors are RFC 9457 problem details (application/problem+json)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # The documentation's JavaScript and CSS come from this installation, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ImageStatusEnum": "cases.models.Image.Status",
        "CaseStatusEnum": "cases.models.Case.Status",
        "ReportStatusEnum": "cases.models.ReportExport.Status",
        "ReportKindEnum": "cases.models.ReportExport.Kind",
        "ImageKindEnum": "cases.models.Image.Kind",
        "ModelKindEnum": "classifier.models.ModelVersion.Kind",
        "DiagnosisEnum": "cases.models.Case.Diagnosis",
    },
}

# --- Security -------------------------------------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Sent on every response (malariaweb.headers). The pages need no inline script or style, so the
# site's own files suffice; data: images for the icons inside some stylesheets (Swagger UI's).
# Empty: no header (not recommended).
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'",
)

# --- Logs, health and metrics (malariaweb.observability, malariaweb.health) --------------------
LOG_FORMAT = env_str("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use 'plain' or 'json'.")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO"))
# /metrics answers only requests with "Authorization: Bearer <METRICS_TOKEN>" when it is set.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# /readyz re-reads the active models' files to check their SHA-256 at most this often.
READYZ_MODEL_RECHECK_SECONDS = env_int("READYZ_MODEL_RECHECK_SECONDS", 300, minimum=0)
