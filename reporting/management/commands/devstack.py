"""python manage.py devstack [--host 127.0.0.1] [--port 8000] [--receiver-port 8025] [--noreload]

The whole service on one machine for development (``make run``): migrates, makes sure there is an
admin, a demo detector with a fresh token and a ``sandbox`` destination, then runs the web server, a
Celery worker, Celery beat and the sandbox receiver (a stand-in government endpoint that the
``sandbox`` destination delivers to) as child processes until Ctrl-C. On the embedded defaults it
needs nothing but Python: SQLite and Celery's filesystem transport, both under ``var/`` (MIR_VAR_DIR).
"""
from __future__ import annotations

import base64
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
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import DetectorScope
from incidents.models import Detector, DetectorToken
from incidents.services.detectors import detector_create, detector_token_issue, detector_token_revoke
from reporting.choices import Transport
from reporting.devstack_processes import Supervisor
from reporting.devstack_secrets import OTP_SECRET_FILE, ensure_admin_otp, read_secret, write_secret
from reporting.models import Destination
from reporting.services.admin_changes import destination_update
from reporting.services.destinations import destination_create
from reporting.services.rules import DEFAULT_RULES, read_rules_file, rules_load

ADMIN_USERNAME = "admin"
PASSWORD_FILE = "dev-admin-password"
DEMO_DETECTOR = "demo-detector"
TOKEN_LABEL = "devstack"
READY_TIMEOUT_SECONDS = 60.0
# The sandbox receiver: a development "government endpoint" on loopback, and the destination that uses it.
RECEIVER_HOST = "127.0.0.1"
SANDBOX_DESTINATION = "sandbox"
SANDBOX_AUTHORITY = "Sandbox authority (development)"
SANDBOX_SECRET_FILE = "sandbox-secret"
SANDBOX_DATA_DIR = "sandbox"
SANDBOX_SECRET_ENV = "MIR_SANDBOX_SECRET"  # read by reporting.sandbox_receiver (keeps the secret out of `ps`)


class Command(BaseCommand):
    help = ("Run the web server, a Celery worker, Celery beat and the sandbox receiver for development "
            "(never in production).")

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--host", default="127.0.0.1", help="Address for the web server (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port for the web server (default 8000).")
        parser.add_argument(
            "--receiver-port", type=int, default=8025,
            help="Port for the sandbox receiver, always on 127.0.0.1 (default 8025).",
        )
        parser.add_argument("--noreload", action="store_true", help="Do not restart the web server on code changes.")
        parser.add_argument(
            "--stop-timeout", type=float, default=10.0,
            help="Seconds each process gets to stop on Ctrl-C before it is killed (default 10).",
        )

    def handle(self, *args, host: str, port: int, receiver_port: int, noreload: bool, stop_timeout: float,
               **options) -> None:  # noqa: ANN002, ANN003
        if settings.PRODUCTION:
            raise CommandError(
                "devstack is a development tool and refuses to run with MIR_ENV=production: it creates an admin "
                "whose password sits in a file and prints detector tokens. Run gunicorn, `celery worker` and "
                "`celery beat` instead (see docs/operations.md)."
            )
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, got {port}")
        if not 0 < receiver_port < 65536:
            raise CommandError(f"--receiver-port must be between 1 and 65535, got {receiver_port}")
        if receiver_port == port:
            raise CommandError(f"--receiver-port must differ from --port ({port})")
        var_dir = Path(settings.VAR_DIR)
        self._prepare_folders(var_dir)
        _check_port_free(host, port)
        _check_port_free(RECEIVER_HOST, receiver_port, option="--receiver-port")
        if not _is_loopback(host):
            self.stderr.write(f"devstack: listening on {host} exposes a development server beyond this machine; "
                              "requests that name another host also need it in ALLOWED_HOSTS")

        self.stdout.write(f"devstack: database {_describe_database()}; broker {_describe_broker()}")
        call_command("migrate", interactive=False, verbosity=1)
        login = self._ensure_admin(var_dir)
        token = self._demo_token()
        base = f"http://{_url_host(_probe_host(host))}:{port}"
        receiver = f"http://{RECEIVER_HOST}:{receiver_port}"
        sandbox_secret = self._sandbox_secret(var_dir)
        self._ensure_sandbox_destination(secret=sandbox_secret, address=f"{receiver}/webhook")

        supervisor = Supervisor(stop_timeout=stop_timeout)
        previous = supervisor.install_signal_handlers()
        dead = None
        try:
            self._start_children(supervisor, host=host, port=port, noreload=noreload, var_dir=var_dir,
                                 receiver_port=receiver_port, keys_url=f"{base}/.well-known/mir-signing-keys.json",
                                 sandbox_secret=sandbox_secret)
            ready = _wait_ready(supervisor, [(_probe_host(host), port), (RECEIVER_HOST, receiver_port)])
            if not supervisor.stop_requested.is_set() and supervisor.first_exited() is None:
                supervisor.say(_banner(base, receiver, login, token, supervisor, ready=ready))
            dead = supervisor.watch()
            if dead is not None:
                supervisor.say(f"devstack: {dead.name} (pid {dead.pid}) {_exit_reason(dead.process.returncode)} "
                               "unexpectedly; stopping the others")
            else:
                supervisor.say("devstack: stopping web, worker, beat and receiver ...")
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
            admin = superusers.filter(username=ADMIN_USERNAME).first()
            if not path.exists() or admin is None:
                return None
            password = read_secret(path)
        else:
            # Generated once and kept, so the password survives a reset of the database.
            password = read_secret(path) if path.exists() else write_secret(path, secrets.token_urlsafe(18))
            admin = user_model.objects.create_superuser(ADMIN_USERNAME, f"{ADMIN_USERNAME}@localhost", password)
            self.stdout.write(f"devstack: created superuser {ADMIN_USERNAME!r} (password in {path})")
        # The admin asks for a second factor; the devstack admin's secret is kept next to its password.
        _, made = ensure_admin_otp(var_dir, admin)
        if made:
            self.stdout.write(f"devstack: enrolled {ADMIN_USERNAME!r} for two-factor login (secret in "
                              f"{var_dir / OTP_SECRET_FILE})")
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

    def _sandbox_secret(self, var_dir: Path) -> str:
        """The webhook secret shared by the sandbox receiver and the ``sandbox`` destination: made once, kept."""
        path = var_dir / SANDBOX_SECRET_FILE
        if path.exists():
            return read_secret(path)
        return write_secret(path, "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii"))

    def _ensure_sandbox_destination(self, *, secret: str, address: str) -> None:
        """The ``sandbox`` destination (default rules) delivering to this run's receiver, with the kept secret.

        Created once with the default policy; afterwards only its address (another --receiver-port) and
        its secret (a new var/) are brought up to date, through the audited services. Rules edited in the
        admin are left alone.
        """
        actor = Actor.system("devstack command")
        destination = Destination.objects.filter(name=SANDBOX_DESTINATION).first()
        try:
            if destination is None:
                with transaction.atomic():
                    destination = destination_create(
                        actor=actor, name=SANDBOX_DESTINATION, authority=SANDBOX_AUTHORITY,
                        transport=Transport.WEBHOOK, address=address, secret=secret,
                    )
                    rules = rules_load(data=read_rules_file(DEFAULT_RULES), actor=actor, destination=destination)
                self.stdout.write(f"devstack: created destination {SANDBOX_DESTINATION!r} with {len(rules)} default "
                                  f"rules, delivering to {address}")
                return
            if destination.transport != Transport.WEBHOOK:
                self.stderr.write(f"devstack: destination {SANDBOX_DESTINATION!r} is not a webhook destination; "
                                  "reports will not reach the sandbox receiver")
                return
            fields = {"address": address} if destination.address != address else {}
            try:
                same_secret = destination.get_secret() == secret
            except ValueError:  # stored under another MIR_ENCRYPTION_KEY: replace it
                same_secret = False
            if fields or not same_secret:
                destination_update(
                    destination=destination, actor=actor, fields=fields, secret=None if same_secret else secret,
                    reason="devstack: follow the sandbox receiver of this run",
                )
                what = [f"now delivers to {address} (was {destination.address})"] if fields else []
                what += [] if same_secret else [f"secret replaced by the one in {SANDBOX_SECRET_FILE}"]
                self.stdout.write(f"devstack: destination {SANDBOX_DESTINATION!r} {'; '.join(what)}")
            if not destination.is_active:
                self.stderr.write(f"devstack: destination {SANDBOX_DESTINATION!r} is deactivated; "
                                  "reports will not reach the sandbox receiver")
        except ValidationError as exc:
            raise CommandError(f"cannot set up destination {SANDBOX_DESTINATION!r}: {exc}") from None

    def _start_children(self, supervisor: Supervisor, *, host: str, port: int, noreload: bool, var_dir: Path,
                        receiver_port: int, keys_url: str, sandbox_secret: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MIR_VAR_DIR": str(var_dir)}
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        celery = [sys.executable, "-m", "celery", "-A", "reporting"]
        web = [sys.executable, manage, "runserver", f"{_url_host(host)}:{port}"] + (["--noreload"] if noreload else [])
        receiver = [sys.executable, "-m", "reporting.sandbox_receiver", "--host", RECEIVER_HOST, "--port",
                    str(receiver_port), "--keys-url", keys_url, "--data-dir", str(var_dir / SANDBOX_DATA_DIR)]
        commands = {
            "web": (web, env),
            # Started before the worker, so a report still pending from a previous run finds it listening.
            "receiver": (receiver, {**env, SANDBOX_SECRET_ENV: sandbox_secret}),
            "worker": ([*celery, "worker", "--concurrency", "2", "--loglevel", "INFO"], env),
            "beat": ([*celery, "beat", "--schedule", str(settings.CELERY_BEAT_SCHEDULE_FILENAME), "--loglevel",
                      "INFO"], env),
        }
        for name, (argv, child_env) in commands.items():
            child = supervisor.start(name, argv, env=child_env, cwd=str(settings.BASE_DIR))
            supervisor.say(f"devstack: started {name} (pid {child.pid}): {' '.join(argv[1:])}")


# --- small pieces -------------------------------------------------------------------------------
def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


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


def _check_port_free(host: str, port: int, *, option: str = "--port") -> None:
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bare, port))
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another with {option}") from None


def _healthy(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _wait_ready(supervisor: Supervisor, servers: list[tuple[str, int]]) -> bool:
    """Poll each server's /healthz until all answer 200, a child dies, Ctrl-C, or the timeout; True when healthy."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    waiting = list(servers)
    while time.monotonic() < deadline:
        if supervisor.stop_requested.is_set() or supervisor.first_exited() is not None:
            return False
        waiting = [(host, port) for host, port in waiting if not _healthy(host, port)]
        if not waiting:
            return True
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
    # SEV-1: under the default rules its early notice goes out without approval, so it reaches the sandbox.
    body = {
        "title": "Intrusion tooling written with the model (devstack demo)",
        "summary": "A cluster of accounts had the model write and debug an intrusion toolkit.",
        "category": "CYBER",
        "severity": "SEV-1",
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


def _banner(base: str, receiver: str, login: tuple[str, str] | None, token: str, supervisor: Supervisor, *,
            ready: bool) -> str:
    if login is None:
        admin = "use your own superuser (`manage.py changepassword NAME` resets a password)"
    else:
        admin = (f"user {login[0]}, password {login[1]}  (kept in {Path(settings.VAR_DIR) / PASSWORD_FILE})\n"
                 f"                plus a code: `python manage.py staff_otp_code {login[0]}` prints the current one "
                 f"(or add the secret in {Path(settings.VAR_DIR) / OTP_SECRET_FILE} to an authenticator app)")
    processes = ", ".join(f"{c.name} (pid {c.pid})" for c in supervisor.children)
    status = "is up" if ready else (f"started, but {base}/healthz or {receiver}/healthz did not answer within "
                                    f"{READY_TIMEOUT_SECONDS:.0f} s")
    lines = [
        "",
        f"Misuse incident reporting: development stack {status}.",
        f"  Admin login:  {base}/admin/   {admin}",
        f"  API docs:     {base}/api/v1/docs/",
        f"  API schema:   {base}/api/v1/schema/",
        f"  Health:       {base}/healthz",
        f"  Sandbox:      {receiver}/ledger   (what the sandbox authority received; destination "
        f"{SANDBOX_DESTINATION!r})",
        f"  Detector:     {DEMO_DETECTOR} (a new token each run; earlier devstack tokens are revoked)",
        f"  Token:        {token}",
        "",
        "File a SEV-1 incident (run it twice: the same Idempotency-Key replays the first answer):",
        _curl_example(base, token),
        "",
        "Its early notice needs no approval: within seconds the worker signs it and delivers it to the sandbox",
        f"receiver, which verifies both signatures. See it arrive:  curl -sS {receiver}/ledger",
        "",
        f"Processes: {processes}. Ctrl-C stops them all.",
        "",
    ]
    return "\n".join(lines)
