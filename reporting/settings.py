"""Settings for the misuse incident reporting service.

Everything comes from the environment. With nothing set, the service runs on the embedded
defaults (SQLite, Celery's filesystem transport under ``var/``). ``MIR_ENV=production`` turns on
Django's deployment checklist and refuses to start without a real ``SECRET_KEY``.
See docs/operations.md for every variable.
"""
from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from reporting.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MIR_VAR_DIR", str(BASE_DIR / "var")))

MIR_ENV = env_str("MIR_ENV", "development")
if MIR_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"MIR_ENV must be development, test or production, got {MIR_ENV!r}")
PRODUCTION = MIR_ENV == "production"

_DEV_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", "" if PRODUCTION else _DEV_SECRET_KEY)
if PRODUCTION and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "MIR_ENV=production needs SECRET_KEY: at least 50 random characters "
        "(python -c 'import secrets; print(secrets.token_urlsafe(64))')"
    )

# Fernet keys for secrets at rest (comma-separated; the first encrypts, all decrypt: rotate by prepending).
MIR_ENCRYPTION_KEYS = env_list("MIR_ENCRYPTION_KEY")
if PRODUCTION and not MIR_ENCRYPTION_KEYS:
    raise ImproperlyConfigured(
        "MIR_ENV=production needs MIR_ENCRYPTION_KEY "
        "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
    )

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when MIR_ENV=production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("MIR_ENV=production needs ALLOWED_HOSTS (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "reporting.apps.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "incidents",
    "reporting",
    "reporting.portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: marks request.user verified when the session holds a second-factor device.
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "reporting.urls"
WSGI_APPLICATION = "reporting.wsgi.application"

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
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
# Persistent connections matter: opening one per request halves throughput (docs/performance.md).
CONN_MAX_AGE = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
_default_db = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", _default_db), conn_max_age=CONN_MAX_AGE, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite serialises writers; wait for the lock instead of failing at once. Transactions take the
    # write lock when they begin: one that read first (the idempotency claim does) could otherwise not
    # upgrade to writing while another writes, and would fail at once whatever the timeout
    # (tests/e2e/test_sqlite_dev.py).
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
elif env_bool("DB_SERVER_SIDE_BINDING", True):
    # Server-side parameters let psycopg prepare a statement once it has run five times on a
    # connection; PostgreSQL then stops parsing and planning the intake path's statements afresh
    # (docs/performance.md). Turn it off behind PgBouncer in transaction mode older than 1.21.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 5})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate limits); Redis when CACHE_URL is set so limits hold across processes ----------
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

if MIR_ENV == "test":
    # Tests create many users; password stretching is the slowest part of their setup.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["reporting.formats"]

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
if not PRODUCTION:
    # WhiteNoise warns at every start when the folder is missing; in production collectstatic makes it.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security (Django's deployment checklist; `manage.py check --deploy` is clean in production)
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = PRODUCTION and env_bool("SECURE_SSL_REDIRECT", True)
# Health probes (docker compose, load balancers) speak plain HTTP inside the network; a redirect to
# https would make a healthy web container look dead.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Mail (escalations) -------------------------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# Without a timeout a stuck SMTP server would hold a worker until the task's hard time limit.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "misuse-reporting@localhost")

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["incidents.api.parsing.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "incidents.api.problems.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Misuse incident reporting: detector API and reviewer API",
    "DESCRIPTION": "Intake API for automated misuse detectors, and the read-only reviewer API for authorities. "
                   "See docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own static files: no CDN, works offline and under a strict CSP.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Intake limits and behaviour (docs/api.md documents each).
MIR_API_MAX_BODY_BYTES = env_int("MIR_API_MAX_BODY_BYTES", 1_048_576, minimum=1024)
MIR_API_MAX_BATCH_ITEMS = env_int("MIR_API_MAX_BATCH_ITEMS", 100, minimum=1)
# Serve well-formed single-incident POSTs without DRF's request/response wrapping (same answers;
# incidents/api/fast_intake.py). Off: every request takes the DRF path.
MIR_API_FAST_INTAKE = env_bool("MIR_API_FAST_INTAKE", True)
MIR_EVIDENCE_MAX_CONTENT_BYTES = env_int("MIR_EVIDENCE_MAX_CONTENT_BYTES", 65_536, minimum=1)
MIR_DETECTOR_RATE_PER_MINUTE = env_int("MIR_DETECTOR_RATE_PER_MINUTE", 600, minimum=1)
MIR_GROUPING_WINDOW_SECONDS = env_int("MIR_GROUPING_WINDOW_SECONDS", 24 * 3600, minimum=0)
MIR_IDEMPOTENCY_TTL_SECONDS = env_int("MIR_IDEMPOTENCY_TTL_SECONDS", 48 * 3600, minimum=24 * 3600)
MIR_CLOCK_SKEW_SECONDS = env_int("MIR_CLOCK_SKEW_SECONDS", 300, minimum=0)

# Outbound reporting (docs/operations.md documents each).
MIR_REPORTING_ENTITY_NAME = env_str("MIR_REPORTING_ENTITY_NAME", "Example AI Lab")
MIR_REPORTING_CONTACT = env_str("MIR_REPORTING_CONTACT", "security-oncall@lab.example (24/7)")
MIR_DELIVERY_TIMEOUT_SECONDS = env_int("MIR_DELIVERY_TIMEOUT_SECONDS", 20, minimum=1)
MIR_DELIVERY_LEASE_SECONDS = env_int("MIR_DELIVERY_LEASE_SECONDS", 120, minimum=10)
MIR_SWEEP_BATCH = env_int("MIR_SWEEP_BATCH", 200, minimum=1)
MIR_ESCALATION_EMAILS = env_list("MIR_ESCALATION_EMAILS")
MIR_WEBHOOK_CA_BUNDLE = env_str("MIR_WEBHOOK_CA_BUNDLE") or None
MIR_FALLBACK_THRESHOLD_SECONDS = env_int("MIR_FALLBACK_THRESHOLD_SECONDS", 6 * 3600, minimum=0)

# Reviewers' portal (docs/portal.md). Failures (password or code) count per account; after
# MIR_PORTAL_LOCKOUT_FAILURES in a row the account is refused for MIR_PORTAL_LOCKOUT_SECONDS. One address
# that fails MIR_PORTAL_IP_MAX_FAILURES times in that period is refused too, whatever names it tries.
MIR_PORTAL_LOCKOUT_FAILURES = env_int("MIR_PORTAL_LOCKOUT_FAILURES", 5, minimum=1)
MIR_PORTAL_LOCKOUT_SECONDS = env_int("MIR_PORTAL_LOCKOUT_SECONDS", 15 * 60, minimum=1)
MIR_PORTAL_IP_MAX_FAILURES = env_int("MIR_PORTAL_IP_MAX_FAILURES", 20, minimum=1)
MIR_PORTAL_PAGE_SIZE = env_int("MIR_PORTAL_PAGE_SIZE", 25, minimum=1)
# Machine reads by reviewers (reviewer API and TAXII, docs/api.md and docs/taxii.md): requests per minute
# per reviewer, and the largest page either answers.
MIR_REVIEWER_RATE_PER_MINUTE = env_int("MIR_REVIEWER_RATE_PER_MINUTE", 120, minimum=1)
MIR_REVIEWER_API_MAX_PAGE = env_int("MIR_REVIEWER_API_MAX_PAGE", 100, minimum=1)
# Who is e-mailed when a reviewer asks a question (empty: every active staff user with an address).
MIR_QUESTION_EMAILS = env_list("MIR_QUESTION_EMAILS")
# The TOTP issuer shown in authenticator apps.
OTP_TOTP_ISSUER = env_str("MIR_TOTP_ISSUER", "Misuse incident reporting")
# django-otp's own back-off would refuse a correct code for seconds after a wrong one; the lockout
# above is the policy instead (it counts code failures too), so its throttle is off.
OTP_TOTP_THROTTLE_FACTOR = 0
LOGIN_URL = "portal:login"

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_DIR = VAR_DIR / "celery"
if CELERY_BROKER_URL == "filesystem://":
    # Every process that publishes needs the folders, not only the ones devstack starts.
    for _folder in ("out", "processed", "control"):
        (CELERY_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "out"),
        "data_folder_out": str(CELERY_BROKER_DIR / "out"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "store_processed": False,
        # Broadcasts (worker mingle, remote control) keep their exchange tables here; kombu's default
        # is a relative "control" folder, i.e. wherever the process happened to start.
        "control_folder": str(CELERY_BROKER_DIR / "control"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fix-up closes the database connections around every task unless this is set, so each
# delivery paid for a new PostgreSQL connection. With it set, the fix-up recycles them only every 1000
# tasks, and reporting.tasks closes them after a task as Django does after a request: when older than
# CONN_MAX_AGE (DB_CONN_MAX_AGE=0: one connection per task again) or unusable (docs/performance.md).
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing gives up fast when the broker is away: the report is safe in PostgreSQL and the sweeper
# re-queues it; a web request must not hang on the doorbell.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY = False
CELERY_TIMEZONE = "UTC"
# Every task goes to this queue unless routed elsewhere; workers must consume it (`celery worker -Q`).
# Separate deployments (or test runs) sharing one broker keep apart by using different queues.
CELERY_TASK_DEFAULT_QUEUE = env_str("MIR_CELERY_QUEUE", "celery")
# How often beat runs the sweeper (seconds): the longest a lost message or an expired lease delays a report.
MIR_SWEEP_INTERVAL_SECONDS = env_int("MIR_SWEEP_INTERVAL_SECONDS", 30, minimum=1)
# The audit sealer (incidents/services/audit_chain.py): how often beat runs it, how many events one
# transaction seals, and how long an event may stay unsealed before audit_verify calls it a failure.
MIR_AUDIT_SEAL_INTERVAL_SECONDS = env_int("MIR_AUDIT_SEAL_INTERVAL_SECONDS", 5, minimum=1)
MIR_AUDIT_SEAL_BATCH = env_int("MIR_AUDIT_SEAL_BATCH", 1000, minimum=1)
MIR_AUDIT_UNSEALED_MAX_AGE_SECONDS = env_int("MIR_AUDIT_UNSEALED_MAX_AGE_SECONDS", 300, minimum=1)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    # The sweeper: re-queues every due report the fast path lost; raises escalations.
    "sweep-due-reports": {"task": "reporting.sweep_due_reports", "schedule": float(MIR_SWEEP_INTERVAL_SECONDS)},
    # Seals committed audit events into the hash chain; a run that finds another still sealing returns at once.
    "seal-audit-chain": {"task": "incidents.seal_audit_chain", "schedule": float(MIR_AUDIT_SEAL_INTERVAL_SECONDS),
                         # A tick still queued when the next is due is dropped: the next one does the same work.
                         "options": {"expires": float(MIR_AUDIT_SEAL_INTERVAL_SECONDS)}},
    "purge-expired-idempotency-keys": {
        "task": "incidents.purge_idempotency_keys",
        "schedule": 3600.0,
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Second factor for staff (django-otp) ------------------------------------------------------
# The name authenticator apps show next to the code; enrolment is `manage.py staff_otp_enrol USER`.
OTP_TOTP_ISSUER = "Misuse incident reporting"
