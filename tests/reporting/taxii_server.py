"""A real TAXII 2.1 server for tests: medallion with its memory backend, in a subprocess on loopback.

``start_taxii_server(workdir)`` writes a medallion config and data file into ``workdir``, starts
``python -m medallion.scripts.run`` on a free port in 18400-18499, waits until discovery answers and
returns a ``TaxiiServer``; ``stop_taxii_server(server)`` ends exactly that process, by its pid.

The backend is medallion's ``MemoryBackend``, untouched for the main collection. Three more
collections script what medallion never does on its own, so the transport's other paths can be tested
against the same real server: one whose add-status stays ``pending``, one answering 503, one
answering 422, one that refuses ``report`` objects (a per-object failure for an object it does not
hold). Two more use medallion's own permissions: read-only and write-only.

This module is imported by the medallion subprocess (for ``ScriptedMemoryBackend``), so it must not
import Django or anything of the project at module level.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from medallion.backends.memory_backend import MemoryBackend
from medallion.exceptions import ProcessingError

PORT_RANGE = range(18400, 18500)
API_ROOT = "mir"
USERNAME = "authority-b"
PASSWORD = "taxii-test-password"
COLLECTION_ID = "4b3f0c5e-8d8a-4a6e-9d8e-2f0c1b7a5e01"
PENDING_COLLECTION_ID = "4b3f0c5e-8d8a-4a6e-9d8e-2f0c1b7a5e02"
UNAVAILABLE_COLLECTION_ID = "4b3f0c5e-8d8a-4a6e-9d8e-2f0c1b7a5e03"
REJECTING_COLLECTION_ID = "4b3f0c5e-8d8a-4a6e-9d8e-2f0c1b7a5e04"
READ_ONLY_COLLECTION_ID = "4b3f0c5e-8d8a-4a6e-9d8e-2f0c1b7a5e05"
WRITE_ONLY_COLLECTION_ID = "4b3f0c5e-8d8a-4a6e-9d8e-2f0c1b7a5e06"
REFUSING_REPORTS_COLLECTION_ID = "4b3f0c5e-8d8a-4a6e-9d8e-2f0c1b7a5e07"
TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


class ScriptedMemoryBackend(MemoryBackend):
    """medallion's memory backend, with scripted behaviour on the special collections only."""

    def add_objects(self, api_root, collection_id, objs, request_time):
        if collection_id == UNAVAILABLE_COLLECTION_ID:
            raise ProcessingError("storage temporarily unavailable", 503)
        if collection_id == REJECTING_COLLECTION_ID:
            raise ProcessingError("content rejected by policy", 422)
        refused = []
        if collection_id == REFUSING_REPORTS_COLLECTION_ID:
            refused = [obj for obj in objs["objects"] if obj.get("type") == "report"]
            objs = {**objs, "objects": [obj for obj in objs["objects"] if obj.get("type") != "report"]}
        status = super().add_objects(api_root, collection_id, objs, request_time)
        if refused:
            failures = status.setdefault("failures", [])
            failures += [{"id": obj["id"], "version": obj["modified"], "message": "report objects are refused"}
                         for obj in refused]
            status.update(failure_count=len(failures), total_count=status["total_count"] + len(refused))
        if collection_id == PENDING_COLLECTION_ID:
            # The stored status dict is this same object: every later GET of it stays pending too.
            ids = [entry["id"] for entry in status.pop("successes", [])]
            status.update(status="pending", success_count=0, failure_count=0, pending_count=len(ids),
                          total_count=len(ids), pendings=ids)
            status.pop("failures", None)
        return status


@dataclass(frozen=True)
class TaxiiServer:
    port: int
    pid: int
    process: subprocess.Popen
    username: str = USERNAME
    password: str = PASSWORD

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_root_url(self) -> str:
        return f"{self.base_url}/{API_ROOT}/"

    def collection_url(self, collection_id: str = COLLECTION_ID) -> str:
        return f"{self.api_root_url}collections/{collection_id}/"


def start_taxii_server(workdir: Path, *, startup_timeout: float = 20.0) -> TaxiiServer:
    """Start medallion on a free loopback port in PORT_RANGE; retry another port if we lost a bind race."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = list(PORT_RANGE)
    random.shuffle(ports)
    last_error = "no free port in 18400-18499"
    for port in ports:
        if not _port_free(port):
            continue
        config = _write_config(workdir, port)
        log = (workdir / f"medallion-{port}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                         os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, "-m", "medallion.scripts.run", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "WARN", str(config)],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        server = TaxiiServer(port=port, pid=process.pid, process=process)
        if _wait_ready(server, startup_timeout):
            return server
        stop_taxii_server(server)
        last_error = (workdir / f"medallion-{port}.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"medallion did not start: {last_error}")


def stop_taxii_server(server: TaxiiServer) -> None:
    """End the server we started, by its pid; kill it if it does not stop within a few seconds."""
    if server.process.poll() is not None:
        return
    os.kill(server.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait(timeout=5)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_ready(server: TaxiiServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False  # exited: most likely another process took the port first
        try:
            answer = requests.get(f"{server.base_url}/taxii2/", auth=(server.username, server.password),
                                  headers={"Accept": TAXII_MEDIA_TYPE}, timeout=1)
            if answer.status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


def _write_config(workdir: Path, port: int) -> Path:
    data_path = workdir / f"taxii-data-{port}.json"
    data_path.write_text(json.dumps(_data(port), indent=2))
    config_path = workdir / f"medallion-{port}.json"
    config_path.write_text(json.dumps({
        "backend": {"module": "tests.reporting.taxii_server",
                    "module_class": "ScriptedMemoryBackend", "filename": str(data_path)},
        "users": {USERNAME: PASSWORD},
        "taxii": {"max_page_size": 100},
    }, indent=2))
    return config_path


def _collection(collection_id: str, title: str, *, can_read: bool = True, can_write: bool = True) -> dict:
    return {"id": collection_id, "title": title, "description": title, "can_read": can_read, "can_write": can_write,
            "media_types": ["application/stix+json;version=2.1"], "objects": [], "manifest": []}


def _data(port: int) -> dict:
    """The memory backend's data file: discovery, one API root, its collections and status list."""
    base = f"http://127.0.0.1:{port}"
    return {
        "/discovery": {"title": "Test authority TAXII server", "description": "medallion for tests",
                       "contact": "tests", "default": f"{base}/{API_ROOT}/", "api_roots": [f"{base}/{API_ROOT}/"]},
        API_ROOT: {
            "information": {"title": "Incident reports", "description": "Reports from AI labs",
                            "versions": [TAXII_MEDIA_TYPE], "max_content_length": 10 * 1024 * 1024},
            "status": [],
            "collections": [
                _collection(COLLECTION_ID, "Misuse incident reports"),
                _collection(PENDING_COLLECTION_ID, "Always pending"),
                _collection(UNAVAILABLE_COLLECTION_ID, "Answers 503"),
                _collection(REJECTING_COLLECTION_ID, "Answers 422"),
                _collection(READ_ONLY_COLLECTION_ID, "Read only", can_write=False),
                _collection(WRITE_ONLY_COLLECTION_ID, "Write only", can_read=False),
                _collection(REFUSING_REPORTS_COLLECTION_ID, "Refuses report objects"),
            ],
        },
    }
