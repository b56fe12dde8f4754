"""Serving the sandbox app: a threaded wsgiref server (stdlib only), or gunicorn when it is installed."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .app import SandboxApp


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    # One thread per connection, so a "slow" delivery does not hold up /control or the next delivery.
    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (base class signature)
        pass


def threaded_server(app: SandboxApp, host: str, port: int, *, quiet: bool = False) -> ThreadingWSGIServer:
    handler = QuietHandler if quiet else WSGIRequestHandler
    return make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=handler)


@contextmanager
def running(app: SandboxApp, host: str = "127.0.0.1", port: int = 0, *,
            quiet: bool = True) -> Iterator[ThreadingWSGIServer]:
    """The receiver serving in a background thread (tests, embedding); stopped and joined on exit."""
    server = threaded_server(app, host, port, quiet=quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="sandbox-receiver", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        app.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_gunicorn(app: SandboxApp, host: str, port: int, *, workers: int, threads: int, quiet: bool) -> None:
    """Run under gunicorn's threaded workers; the ledger and control state are shared through SQLite."""
    from gunicorn.app.base import BaseApplication

    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",  # threads: a "slow" request must not block the worker's other requests
        "threads": threads,
        "graceful_timeout": 5,
        "accesslog": None if quiet else "-",
        # gunicorn 27 otherwise opens a control socket under ~/.gunicorn, shared by every instance of a user.
        "control_socket_disable": True,
    }

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> SandboxApp:
            return app

    _Gunicorn().run()
