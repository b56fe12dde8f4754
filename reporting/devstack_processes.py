"""Start, watch and stop the child processes of ``manage.py devstack`` (web, worker, beat, receiver).

Each child gets its own process group, so a Ctrl-C in the terminal reaches only the supervisor,
which then shuts the children down in order: SIGTERM to each child (Celery does a warm shutdown of
its pool, runserver just exits), a bounded wait, then whatever is left in each child's group (the
runserver autoreloader's inner process, Celery pool processes of a worker that died) gets SIGTERM
and, after a short grace, SIGKILL. Nothing the supervisor started outlives it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

GROUP_GRACE_SECONDS = 3.0
NAME_WIDTH = 8  # "receiver", the longest child name: keeps the "name | line" prefixes aligned


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen
    pump: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Supervisor:
    """Owns the children; ``say`` is the one writer to the terminal, so lines never interleave."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    stop_timeout: float = 10.0
    children: list[Child] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    hurry: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, text: str) -> None:
        with self._lock:
            self.out.write(text if text.endswith("\n") else text + "\n")
            self.out.flush()

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: str | None = None) -> Child:
        process = subprocess.Popen(  # noqa: S603  (argv built by the caller from fixed parts)
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            process_group=0,  # its own group: see the module docstring
        )
        child = Child(name=name, argv=list(argv), process=process)
        child.pump = threading.Thread(target=self._pump, args=(child,), name=f"pump-{name}", daemon=True)
        child.pump.start()
        self.children.append(child)
        return child

    def _pump(self, child: Child) -> None:
        assert child.process.stdout is not None
        for raw in iter(child.process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.say(f"{child.name:<{NAME_WIDTH}} | {line}")

    # --- signals --------------------------------------------------------------------------------
    def handle_signal(self, signum: int, frame: object) -> None:  # noqa: ARG002  (signal handler signature)
        if self.stop_requested.is_set():
            self.hurry.set()  # a second Ctrl-C: stop waiting for graceful shutdowns
        self.stop_requested.set()

    def install_signal_handlers(self) -> dict[int, object]:
        return {sig: signal.signal(sig, self.handle_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def restore_signal_handlers(previous: Mapping[int, object]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    # --- watching -------------------------------------------------------------------------------
    def first_exited(self) -> Child | None:
        for child in self.children:
            if child.process.poll() is not None:
                return child
        return None

    def watch(self, poll_seconds: float = 0.25) -> Child | None:
        """Block until a stop is requested (returns None) or a child exits (returns that child)."""
        while not self.stop_requested.is_set():
            dead = self.first_exited()
            if dead is not None:
                return dead
            self.stop_requested.wait(poll_seconds)
        return None

    # --- stopping -------------------------------------------------------------------------------
    def stop_all(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                _send(child.pid, signal.SIGTERM)
        self._wait_until(lambda: all(c.process.poll() is not None for c in self.children), self.stop_timeout)
        for child in self.children:
            if child.process.poll() is None:
                self.say(f"devstack: {child.name} (pid {child.pid}) did not stop in time; killing it")
                _send_group(child.pid, signal.SIGKILL)
            child.process.wait()
        # The leaders are gone; clear out anything left behind in their groups.
        leftovers = [c for c in self.children if _group_alive(c.pid)]
        for child in leftovers:
            _send_group(child.pid, signal.SIGTERM)
        self._wait_until(lambda: not any(_group_alive(c.pid) for c in leftovers), GROUP_GRACE_SECONDS)
        for child in leftovers:
            if _group_alive(child.pid):
                _send_group(child.pid, signal.SIGKILL)
        self._wait_until(lambda: not any(_group_alive(c.pid) for c in leftovers), GROUP_GRACE_SECONDS)
        for child in self.children:
            if child.pump is not None:
                child.pump.join(timeout=2)

    def _wait_until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline and not self.hurry.is_set():
            time.sleep(0.05)


def _send(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _send_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies included, until init reaps them)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
