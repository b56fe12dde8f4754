"""`manage.py devstack` (make run): the whole service on the embedded defaults, and its supervision.

The e2e tests run the command as a user would, with DATABASE_URL, CELERY_BROKER_URL and CACHE_URL
removed (SQLite and the filesystem broker under a temporary MIR_VAR_DIR), file a SEV-1 incident and
wait for its early notice to reach the sandbox receiver verified, and check that every process it
started is gone after it exits. The supervisor tests use tiny Python children to pin down the stop
sequence without the cost of a full stack.
"""
from __future__ import annotations

import io
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from reporting.devstack_processes import Supervisor

BASE_DIR = Path(__file__).resolve().parents[2]
START_DEADLINE = 120.0  # migrations on a fresh SQLite file, then four processes
STOP_DEADLINE = 30.0
DELIVERY_DEADLINE = 60.0  # filing a SEV-1 incident to its early notice in the sandbox ledger
# Web servers and receivers come from separate ranges; the second run's receiver from a third one, so
# that it always moves the sandbox destination to another port.
WEB_PORTS = range(18100, 18150)
RECEIVER_PORTS = range(18150, 18175)
RERUN_RECEIVER_PORTS = range(18175, 18199)


# --- helpers ------------------------------------------------------------------------------------
def _free_port(ports: range = WEB_PORTS) -> int:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port in {ports.start}-{ports.stop - 1}")


def _group_members(pgids: set[int]) -> list[int]:
    """Pids of live (non-zombie) processes whose process group is one of ``pgids``, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) in pgids:
            members.append(int(entry.name))
    return members


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


class Devstack:
    """``manage.py devstack`` as a subprocess, its output collected by a thread."""

    def __init__(self, var_dir: Path, *extra: str, receiver_ports: range = RECEIVER_PORTS) -> None:
        self.port = _free_port()
        self.var_dir = var_dir
        self.receiver_port = _free_port(receiver_ports)
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL",
                                                               "MIR_ENV"}}
        env.update(MIR_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "devstack", "--port", str(self.port), "--receiver-port",
             str(self.receiver_port), *extra],
            cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            self._lines.append(raw.decode("utf-8", errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self._lines)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def receiver(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    def wait_for(self, pattern: str, timeout: float = START_DEADLINE) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output, re.MULTILINE)
            if match:
                return match
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                match = re.search(pattern, self.output, re.MULTILINE)
                if match:
                    return match
                pytest.fail(f"devstack exited ({self.process.returncode}) before {pattern!r}:\n{self.output}")
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {pattern!r}:\n{self.output}")

    def child_pids(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in re.findall(r"^devstack: started (\w+) \(pid (\d+)\)", self.output,
                                                            re.MULTILINE)}

    def wait_for_ledger_entry(self, incident_id: str, timeout: float = DELIVERY_DEADLINE) -> dict:
        """Poll the receiver's ledger (bounded) until a report about ``incident_id`` is there; return its entry."""
        deadline = time.monotonic() + timeout
        entries: list[dict] = []
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"devstack exited ({self.process.returncode}) while waiting for a delivery:\n"
                            f"{self.output}")
            entries = httpx.get(f"{self.receiver}/ledger", timeout=10).json()
            mine = [e for e in entries if e["document"].get("incident_id") == incident_id]
            if mine:
                return mine[0]
            time.sleep(0.5)
        pytest.fail(f"no report about {incident_id} in the sandbox ledger after {timeout:.0f} s: {entries}\n"
                    f"{self.output}")

    def close(self) -> None:
        """Last resort after a failed test: stop devstack, then anything left of the groups it made."""
        pgids = set(self.child_pids().values())
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pgid in pgids:
            if _group_members({pgid}):
                os.killpg(pgid, signal.SIGKILL)


def _admin_login(stack: Devstack, password: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL",
                                                           "MIR_ENV"}}
    env["MIR_VAR_DIR"] = str(stack.var_dir)
    code = subprocess.run([sys.executable, "manage.py", "staff_otp_code", "admin"], cwd=BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert re.fullmatch(r"\d{6}", code), code
    with httpx.Client(base_url=stack.base, timeout=10) as browser:
        form = browser.get("/admin/login/?next=/admin/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        without_code = browser.post("/admin/login/?next=/admin/", data={
            "csrfmiddlewaretoken": csrf, "username": "admin", "password": password, "next": "/admin/"})
        assert without_code.status_code == 200 and "Please enter your OTP token" in without_code.text
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', without_code.text).group(1)
        logged_in = browser.post("/admin/login/?next=/admin/", data={
            "csrfmiddlewaretoken": csrf, "username": "admin", "password": password, "otp_token": code,
            "next": "/admin/"})
        assert logged_in.status_code == 302 and logged_in.headers["location"] == "/admin/", logged_in.text[-2000:]
        assert browser.get("/admin/").status_code == 200


def _assert_no_children_left(pgids: set[int]) -> None:
    deadline = time.monotonic() + 5  # orphans are reaped by init, not by us
    while _group_members(pgids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_members(pgids), f"processes left behind: {_group_members(pgids)}"
    assert not [pid for pid in pgids if _alive(pid)]


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory) -> Path:
    """One var/ for the module: the second run also checks what a re-run keeps (password, detector)."""
    return tmp_path_factory.mktemp("devstack") / "var"


# --- the whole stack ----------------------------------------------------------------------------
@pytest.mark.e2e
def test_devstack_delivers_a_sev1_report_to_the_sandbox_and_stops_everything_on_ctrl_c(var_dir):
    stack = Devstack(var_dir)
    try:
        stack.wait_for(r"^Processes: web \(pid \d+\), receiver \(pid \d+\), worker \(pid \d+\), beat \(pid \d+\)")
        assert "development stack is up" in stack.output
        token = stack.wait_for(r"^  Token:\s+(mir_[A-Za-z0-9_-]+)$").group(1)
        password = stack.wait_for(r"user admin, password (\S+)").group(1)
        for path in ("/admin/", "/api/v1/docs/", "/api/v1/schema/", "/healthz", "Idempotency-Key: "):
            assert path in stack.output
        assert f"  Sandbox:      {stack.receiver}/ledger" in stack.output
        assert f"created destination 'sandbox' with 5 default rules, delivering to {stack.receiver}/webhook" \
            in stack.output
        assert '"severity": "SEV-1"' in stack.output  # the printed curl files what reaches the sandbox
        stack.wait_for(r"^worker   \| .* ready\.$")
        stack.wait_for(r"^beat     \| .*beat: Starting")

        assert httpx.get(f"{stack.base}/healthz", timeout=10).json() == {"status": "ok"}
        assert httpx.get(f"{stack.receiver}/healthz", timeout=10).json()["status"] == "ok"
        body = {
            "title": "Intrusion tooling written with the model", "summary": "Accounts had the model write a toolkit.",
            "category": "CYBER", "severity": "SEV-1", "detected_at": "2026-01-01T00:00:00Z",
            "model": {"name": "Fable 5"},
        }
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
        created = httpx.post(f"{stack.base}/api/v1/incidents/", json=body, headers=headers, timeout=10)
        assert created.status_code == 201, created.text
        # The early notice needs no approval: the worker signs it and the receiver verifies both signatures
        # (fetching the keys from the dev server's /.well-known/mir-signing-keys.json).
        entry = stack.wait_for_ledger_entry(created.json()["id"])
        assert entry["status"] == "accepted" and entry["verified"] is True, entry
        assert entry["document"]["stage"] == "early_notice"
        assert entry["document"]["authority"] == "Sandbox authority (development)"
        assert httpx.get(f"{stack.base}/admin/login/", timeout=10).status_code == 200
        # A newcomer logs in the way the banner says: password plus the code `staff_otp_code` prints.
        assert "python manage.py staff_otp_code admin" in stack.output
        _admin_login(stack, password)

        for name, value in (("dev-admin-password", password), ("sandbox-secret", None), ("dev-admin-otp-secret", None)):
            secret_file = var_dir / name
            if value is not None:
                assert secret_file.read_text().strip() == value
            assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert (var_dir / "sandbox-secret").read_text().startswith("whsec_")
        assert (var_dir / "sandbox" / "ledger.sqlite3").is_file()
        for folder in ("out", "processed", "control"):
            assert (var_dir / "celery" / folder).is_dir()

        pgids = set(stack.child_pids().values())
        assert set(stack.child_pids()) == {"web", "receiver", "worker", "beat"}
        stack.process.send_signal(signal.SIGINT)
        assert stack.process.wait(timeout=STOP_DEADLINE) == 0, stack.output
        assert "devstack: all processes stopped." in stack.output
        _assert_no_children_left(pgids)
    finally:
        stack.close()


@pytest.mark.e2e
def test_devstack_rerun_keeps_its_secrets_follows_the_receiver_port_and_exits_non_zero_when_a_child_dies(var_dir):
    first_password = (var_dir / "dev-admin-password").read_text().strip() if var_dir.exists() else None
    stack = Devstack(var_dir, "--noreload", receiver_ports=RERUN_RECEIVER_PORTS)
    try:
        stack.wait_for(r"^Processes: ")
        pids = stack.child_pids()
        if first_password is not None:
            assert f"user admin, password {first_password}" in stack.output
            # Same secret file, another port: the sandbox destination is moved, not duplicated.
            assert re.search(rf"^devstack: destination 'sandbox' now delivers to {stack.receiver}/webhook \(was "
                             rf"http://127\.0\.0\.1:\d+/webhook\)$", stack.output, re.MULTILINE), stack.output
            assert "secret replaced" not in stack.output
        os.kill(pids["beat"], signal.SIGKILL)
        assert stack.process.wait(timeout=STOP_DEADLINE) != 0
        stack._reader.join(timeout=5)
        assert "beat (pid" in stack.output and "was killed by SIGKILL unexpectedly; stopping the others" in stack.output
        _assert_no_children_left(set(pids.values()))
    finally:
        stack.close()


def test_devstack_refuses_production(tmp_path):
    from cryptography.fernet import Fernet

    env = {**os.environ, "MIR_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48),
           "MIR_ENCRYPTION_KEY": Fernet.generate_key().decode(),
           "ALLOWED_HOSTS": "reports.example.org", "MIR_VAR_DIR": str(tmp_path / "var")}
    result = subprocess.run(
        [sys.executable, "manage.py", "devstack", "--port", "18199"], cwd=BASE_DIR, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "refuses to run with MIR_ENV=production" in result.stderr
    assert not (tmp_path / "var" / "dev-admin-password").exists()


def test_devstack_refuses_one_port_for_web_and_receiver(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"}}
    env["MIR_VAR_DIR"] = str(tmp_path / "var")
    result = subprocess.run(
        [sys.executable, "manage.py", "devstack", "--port", "18199", "--receiver-port", "18199"], cwd=BASE_DIR,
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "--receiver-port must differ from --port (18199)" in result.stderr
    assert not (tmp_path / "var" / "sandbox-secret").exists()


# --- the supervisor on its own --------------------------------------------------------------------
def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


SLEEPER = "import time; print('up', flush=True); time.sleep(60)"
# Ignores SIGTERM: only SIGKILL ends it.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
# Leaves a grandchild in its process group when it exits on SIGTERM (like the runserver autoreloader).
PARENT_OF_ORPHAN = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print('up', flush=True); time.sleep(60)"
)


def _wait_up(supervisor: Supervisor, out: io.StringIO, count: int) -> None:
    deadline = time.monotonic() + 20
    while out.getvalue().count("| up") < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.getvalue().count("| up") == count, out.getvalue()


def test_supervisor_reports_the_child_that_died_and_stops_the_rest():
    out = io.StringIO()
    supervisor = Supervisor(out=out, stop_timeout=5)
    try:
        steady = supervisor.start("web", _python(SLEEPER))
        supervisor.start("worker", _python("import sys; print('up', flush=True); sys.exit(3)"))
        dead = supervisor.watch(poll_seconds=0.05)
        assert dead is not None and dead.name == "worker" and dead.process.returncode == 3
        assert steady.process.poll() is None
    finally:
        supervisor.stop_all()
    assert steady.process.returncode == -signal.SIGTERM
    assert "worker   | up" in out.getvalue()


def test_supervisor_kills_what_ignores_sigterm_and_clears_process_groups():
    out = io.StringIO()
    supervisor = Supervisor(out=out, stop_timeout=1)
    try:
        stubborn = supervisor.start("beat", _python(STUBBORN))
        parent = supervisor.start("web", _python(PARENT_OF_ORPHAN))
        _wait_up(supervisor, out, 2)
        supervisor.stop_requested.set()
        assert supervisor.watch() is None
        started = time.monotonic()
    finally:
        supervisor.stop_all()
    assert time.monotonic() - started < 1 + 3 * 2 + 2  # stop timeout, then two bounded group graces
    assert stubborn.process.returncode == -signal.SIGKILL
    assert parent.process.returncode == -signal.SIGTERM
    _assert_no_children_left({stubborn.pid, parent.pid})
    assert "did not stop in time; killing it" in out.getvalue()
