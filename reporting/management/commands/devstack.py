"""python manage.py devstack [--host 127.0.0.1] [--port 8000] [--noreload]

The whole service on one machine for development (``make run``): migrates, makes sure there is an
admin and a demo detector with a fresh token, then runs the web server, a Celery worker and Celery
beat as child processes until Ctrl-C. On the embedded defaults it needs nothing but Python: SQLite
and Celery's filesystem transport, both under ``var/`` (MIR_VAR_DIR).
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import DetectorScope
from incidents.models import Detector, DetectorToken
from incidents.services.detectors import detector_create, detector_token_issue, detector_token_revoke
from reporting.devstack_processes import Supervisor

ADMIN_USERNAME = "admin"
PASSWORD_FILE = "dev-admin-password"
DEMO_DETECTOR = "demo-detector"
TOKEN_LABEL = "devstack"
READY_TIMEOUT_SECONDS = 60.0


class Command(BaseCommand):
    help = "Run the web server, a Celery worker and Celery beat for development (never in production)."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--host", default="127.0.0.1", help="Address for the web server (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port for the web server (default 8000).")
        parser.add_argument("--noreload", action="store_true", help="Do not restart the web server on code changes.")
        parser.add_argument(
            "--stop-timeout", type=float, default=10.0,
            help="Seconds each process gets to stop on Ctrl-C before it is killed (default 10).",
        )

    def handle(self, *args, host: str, port: int, noreload: bool, stop_timeout: float,
               **options) -> None:  # noqa: ANN002, ANN003
        if settings.PRODUCTION:
            raise CommandError(
                "devstack is a development tool and refuses to run with MIR_ENV=production: it creates an admin "
                "whose password sits in a file and prints detector tokens. Run gunicorn, `celery worker` and "
                "`celery beat` instead (see docs/operations.md)."
            )
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, got {port}")
        var_dir = Path(settings.VAR_DIR)
        self._prepare_folders(var_dir)
        _check_port_free(host, port)
        if not _is_loopback(host):
            self.stderr.write(f"devstack: listening on {host} exposes a development server beyond this machine; "
                              "requests that name another host also need it in ALLOWED_HOSTS")

        self.stdout.write(f"devstack: database {_describe_database()}; broker {_describe_broker()}")
        call_command("migrate", interactive=False, verbosity=1)
        login = self._ensure_admin(var_dir)
        token = self._demo_token()

        supervisor = Supervisor(stop_timeout=stop_timeout)
        previous = supervisor.install_signal_handlers()
        dead = None
        try:
            self._start_children(supervisor, host=host, port=port, noreload=noreload, var_dir=var_dir)
            ready = _wait_ready(supervisor, _probe_host(host), port)
            if not supervisor.stop_requested.is_set() and supervisor.first_exited() is None:
                base = f"http://{_url_host(_probe_host(host))}:{port}"
                supervisor.say(_banner(base, login, token, supervisor, ready=ready))
            dead = supervisor.watch()
            if dead is not None:
                supervisor.say(f"devstack: {dead.name} (pid {dead.pid}) {_exit_reason(dead.process.returncode)} "
                               "unexpectedly; stopping the others")
            else:
                supervisor.say("devstack: stopping web, worker and beat ...")
        finally:
            # Also on an error while starting: whatever did start is stopped.
            supervisor.stop_all()
            supervisor.restore_signal_handlers(previous)
        if dead is not None:
            raise CommandError(f"{dead.name} {_exit_reason(dead.process.returncode)} unexpectedly; "
                               "see its output above", returncode=1)
        supervisor.say("devstack: all processes stopped.")

    # --- preparation ----------------------------------------------------------------------------
    def _prepare_folders(self, var_dir: Path) -> None:
        var_dir.mkdir(parents=True, exist_ok=True)
        if settings.CELERY_BROKER_URL == "filesystem://":
            options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
            for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
                if options.get(key):
                    Path(options[key]).mkdir(parents=True, exist_ok=True)
        Path(settings.CELERY_BEAT_SCHEDULE_FILENAME).parent.mkdir(parents=True, exist_ok=True)

    def _ensure_admin(self, var_dir: Path) -> tuple[str, str] | None:
        """(username, password) of the devstack admin, or None when someone made their own superuser."""
        user_model = get_user_model()
        path = var_dir / PASSWORD_FILE
        superusers = user_model.objects.filter(is_superuser=True)
        if superusers.exists():
            if path.exists() and superusers.filter(username=ADMIN_USERNAME).exists():
                return ADMIN_USERNAME, _read_secret(path)
            return None
        # Generated once and kept, so the password survives a reset of the database.
        password = _read_secret(path) if path.exists() else _write_secret(path, secrets.token_urlsafe(18))
        user_model.objects.create_superuser(ADMIN_USERNAME, f"{ADMIN_USERNAME}@localhost", password)
        self.stdout.write(f"devstack: created superuser {ADMIN_USERNAME!r} (password in {path})")
        return ADMIN_USERNAME, password

    def _demo_token(self) -> str:
        """A new token for the demo detector; earlier devstack tokens are revoked so they do not pile up."""
        actor = Actor.system("devstack command")
        detector = Detector.objects.filter(name=DEMO_DETECTOR).first()
        if detector is None:
            detector = detector_create(
                actor=actor, name=DEMO_DETECTOR, description="Created by `manage.py devstack` for trying the API."
            )
        elif not detector.is_active:
            self.stderr.write(f"devstack: detector {DEMO_DETECTOR!r} is deactivated; its token will be refused")
        stale = DetectorToken.objects.filter(detector=detector, label=TOKEN_LABEL, revoked_at__isnull=True)
        for token in stale:
            detector_token_revoke(actor=actor, token=token, reason="superseded by a new devstack run")
        issued = detector_token_issue(actor=actor, detector=detector, scopes=DetectorScope.values, label=TOKEN_LABEL)
        return issued.secret

    def _start_children(self, supervisor: Supervisor, *, host: str, port: int, noreload: bool,
                        var_dir: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MIR_VAR_DIR": str(var_dir)}
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        celery = [sys.executable, "-m", "celery", "-A", "reporting"]
        web = [sys.executable, manage, "runserver", f"{_url_host(host)}:{port}"] + (["--noreload"] if noreload else [])
        commands = {
            "web": web,
            "worker": [*celery, "worker", "--concurrency", "2", "--loglevel", "INFO"],
            "beat": [*celery, "beat", "--schedule", str(settings.CELERY_BEAT_SCHEDULE_FILENAME), "--loglevel", "INFO"],
        }
        for name, argv in commands.items():
            child = supervisor.start(name, argv, env=env, cwd=str(settings.BASE_DIR))
            supervisor.say(f"devstack: started {name} (pid {child.pid}): {' '.join(argv[1:])}")


# --- small pieces -------------------------------------------------------------------------------
def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _read_secret(path: Path) -> str:
    os.chmod(path, 0o600)
    return path.read_text(encoding="utf-8").strip()


def _write_secret(path: Path, value: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _is_loopback(host: str) -> bool:
    bare = host.strip("[]")
    try:
        return bare == "localhost" or ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def _probe_host(host: str) -> str:
    """Where to reach the server from here: the loopback address for a wildcard listen address."""
    bare = host.strip("[]")
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bare, bare)  # noqa: S104  (comparing, not binding)


def _check_port_free(host: str, port: int) -> None:
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bare, port))
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port") from None


def _wait_ready(supervisor: Supervisor, host: str, port: int) -> bool:
    """Poll /healthz until it answers 200, a child dies, Ctrl-C, or the timeout; True when healthy."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if supervisor.stop_requested.is_set() or supervisor.first_exited() is not None:
            return False
        connection = http.client.HTTPConnection(host, port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return True
        except OSError:
            pass
        finally:
            connection.close()
        supervisor.stop_requested.wait(0.5)
    return False


def _describe_database() -> str:
    db = settings.DATABASES["default"]
    engine = db["ENGINE"].rsplit(".", 1)[-1]
    where = db["NAME"] if engine == "sqlite3" else f"{db.get('HOST') or 'localhost'}/{db['NAME']}"
    return f"{engine} {where}"


def _describe_broker() -> str:
    url = settings.CELERY_BROKER_URL
    if url == "filesystem://":
        return f"filesystem:// in {settings.CELERY_BROKER_DIR}"
    return url.split("@")[-1] if "@" in url else url  # never print a broker password


def _curl_example(base: str, token: str) -> str:
    body = {
        "title": "Phishing kit generation (devstack demo)",
        "summary": "A cluster of accounts generated phishing pages impersonating a bank.",
        "category": "FRAUD",
        "severity": "SEV-2",
        "detected_at": timezone.now().replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "model": {"name": "Fable 5", "version": "demo"},
    }
    return (
        f"curl -sS -i -X POST {base}/api/v1/incidents/ \\\n"
        f"    -H 'Authorization: Bearer {token}' \\\n"
        "    -H 'Content-Type: application/json' \\\n"
        f"    -H 'Idempotency-Key: {uuid.uuid4()}' \\\n"
        f"    -d '{json.dumps(body)}'"
    )


def _banner(base: str, login: tuple[str, str] | None, token: str, supervisor: Supervisor, *, ready: bool) -> str:
    if login is None:
        admin = "use your own superuser (`manage.py changepassword NAME` resets a password)"
    else:
        admin = f"user {login[0]}, password {login[1]}  (kept in {Path(settings.VAR_DIR) / PASSWORD_FILE})"
    processes = ", ".join(f"{c.name} (pid {c.pid})" for c in supervisor.children)
    status = "is up" if ready else f"started, but {base}/healthz did not answer within {READY_TIMEOUT_SECONDS:.0f} s"
    lines = [
        "",
        f"Misuse incident reporting: development stack {status}.",
        f"  Admin login:  {base}/admin/   {admin}",
        f"  API docs:     {base}/api/v1/docs/",
        f"  API schema:   {base}/api/v1/schema/",
        f"  Health:       {base}/healthz",
        f"  Detector:     {DEMO_DETECTOR} (a new token each run; earlier devstack tokens are revoked)",
        f"  Token:        {token}",
        "",
        "File an incident (run it twice: the same Idempotency-Key replays the first answer):",
        _curl_example(base, token),
        "",
        f"Processes: {processes}. Ctrl-C stops them all.",
        "",
    ]
    return "\n".join(lines)
