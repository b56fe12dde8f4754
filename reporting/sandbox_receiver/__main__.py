"""python -m reporting.sandbox_receiver --port 8025 --secret whsec_... --keys-url URL --data-dir var/sandbox

Runs the sandbox "government endpoint" (docs/sandbox-receiver.md). The secret may come from the
environment (MIR_SANDBOX_SECRET) instead of the command line, where other users could read it in ``ps``.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from standardwebhooks import Webhook

from .app import MAX_BODY_BYTES, SandboxApp
from .keys import KeyStore
from .ledger import MODES, Control, Ledger
from .server import run_gunicorn, threaded_server

SECRET_ENV = "MIR_SANDBOX_SECRET"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m reporting.sandbox_receiver",
        description="A sandbox government endpoint: verifies signed reports, dedupes them, issues receipts.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8025, help="port to listen on (default 8025; 0: any free port)")
    parser.add_argument("--secret", default=os.environ.get(SECRET_ENV, ""),
                        help=f"the destination's webhook secret, whsec_... (default: ${SECRET_ENV})")
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--keys-url", help="where the sender publishes its Ed25519 keys (JSON)")
    keys.add_argument("--keys-file", help="the same keys JSON from a file (re-read when a key id is unknown)")
    keys.add_argument("--no-document-check", action="store_true",
                      help="accept documents without checking their signature (ledger shows verified=false)")
    parser.add_argument("--data-dir", default="var/sandbox", help="folder for the ledger (default var/sandbox)")
    parser.add_argument("--mode", choices=MODES, default="ok", help="how to answer deliveries at start (default ok)")
    parser.add_argument("--delay-seconds", type=float, default=Control.delay_seconds, help="delay of 'slow' mode")
    parser.add_argument("--fail-count", type=int, help="apply --mode (default: fail) to this many deliveries only")
    parser.add_argument("--retry-after-seconds", type=int, help="Retry-After sent with 'fail' mode's 503")
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    parser.add_argument("--server", choices=("threaded", "gunicorn"), default="threaded",
                        help="threaded: the standard library's server (default); gunicorn: gthread workers")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes (default 1)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (default 8)")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error(f"give --secret or set {SECRET_ENV}")
    try:
        Webhook(args.secret)
        well_formed = args.secret.startswith("whsec_")
    except Exception:  # noqa: BLE001  (the library raises several types for a malformed secret)
        well_formed = False
    if not well_formed:
        parser.error("--secret must be a Standard Webhooks secret: whsec_ followed by base64")
    if args.keys_url and not args.keys_url.startswith(("http://", "https://")):
        parser.error("--keys-url must be an http:// or https:// URL")
    if args.fail_count is not None and args.mode == "ok":
        args.mode = "fail"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    ledger = Ledger(args.data_dir)
    # The flags define the start state, whatever a previous run left in the data folder.
    ledger.set_control(Control(mode=args.mode, delay_seconds=args.delay_seconds, fail_count=args.fail_count,
                               retry_after_seconds=args.retry_after_seconds))
    keys = None
    if args.keys_url:
        keys = KeyStore(url=args.keys_url)
    elif args.keys_file:
        keys = KeyStore(path=args.keys_file)
    app = SandboxApp(secret=args.secret, ledger=ledger, keys=keys, max_body_bytes=args.max_body_bytes)
    check = args.keys_url or args.keys_file or "off"
    if args.server == "gunicorn":
        print(f"sandbox receiver: gunicorn on {args.host}:{args.port}; ledger {ledger.path}; document keys {check}",
              file=sys.stderr, flush=True)
        run_gunicorn(app, args.host, args.port, workers=args.workers, threads=args.threads, quiet=args.quiet)
        return
    server = threaded_server(app, args.host, args.port, quiet=args.quiet)
    host, port = server.server_address[:2]
    print(f"sandbox receiver: deliveries to http://{host}:{port}/webhook; ledger {ledger.path}; "
          f"document keys {check}", file=sys.stderr, flush=True)
    # SIGTERM (docker, a test harness) stops it like Ctrl-C does: the server socket is closed cleanly.
    signal.signal(signal.SIGTERM, _exit)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        app.stopping.set()
        server.server_close()


def _exit(signum: int, frame: object) -> None:  # noqa: ARG001  (signal handler signature)
    raise SystemExit(0)


if __name__ == "__main__":
    main()
