"""The service as in production: migrated and seeded through its CLI, served by gunicorn
(gthread) on loopback in its own process group so it can be SIGKILLed whole and restarted."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]
# Instance folders and gunicorn logs of this run (kept when an invariant fails).
WORKDIR = Path(tempfile.mkdtemp(prefix="rel-run-"))


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(database_url: str, **extra: str) -> dict[str, str]:
    """Environment-only configuration (api/config.py) for one scenario's service."""
    instance = tempfile.mkdtemp(prefix="instance-", dir=WORKDIR)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": instance,
        "MEDIA_ROOT": f"{instance}/media",
        "SECRET_KEY": "reliability-" + "k" * 40,
        "LOG_LEVEL": "ERROR",
        # Simulated devices sign in many times from one address within a minute.
        "LOGIN_RATE_LIMIT": "100000 per minute",
        "ACCESS_TOKEN_TTL": "7200",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def prepare_database(env: dict[str, str]) -> None:
    """`flask migrate` then `flask seed-demo`, exactly as an operator would."""
    for cmd in (["migrate"], ["seed-demo"]):
        proc = subprocess.run(
            [*FLASK, *cmd], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"flask {cmd[0]} failed:\n{proc.stdout}\n{proc.stderr}")


class Gunicorn:
    """gunicorn wsgi:app with gthread workers."""

    def __init__(self, env: dict[str, str], workers: int = 2, threads: int = 4) -> None:
        self.env = env
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="gunicorn-", suffix=".log", dir=WORKDIR)[1])
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - kept open across restarts

    def log_errors(self) -> list[str]:
        """Tracebacks, worker timeouts and other errors gunicorn or the app logged."""
        self.log.flush()
        text = self.log_path.read_text(errors="replace")
        marks = ("Traceback", "[CRITICAL]", "[ERROR]", "ERROR:", "WORKER TIMEOUT")
        return [line for line in text.splitlines() if any(m in line for m in marks)]

    def start(self, limit: float = 30.0) -> None:
        """Start and wait until a worker answers HTTP."""
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(self.threads),
            "--timeout",
            "60",
            "--log-level",
            "warning",
            # Other gunicorns on this machine share the default control socket path.
            "--no-control-socket",
            "wsgi:app",
        ]
        # Own session: a SIGKILL to the group takes the arbiter and its workers at once.
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log, start_new_session=True
        )
        deadline = time.time() + limit
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                try:
                    conn.request("GET", "/api/v1/health")
                    conn.getresponse().read()
                    return
                finally:
                    conn.close()
            time.sleep(0.05)
        raise RuntimeError("gunicorn did not start")

    def alive(self) -> bool:
        """Whether the arbiter runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (arbiter and workers die at the same instant)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        # Workers die a moment after the arbiter; until the last one is gone the listening
        # socket lives on, accepts connections and then resets them, and a new arbiter
        # cannot bind the port.
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.01)
        raise RuntimeError("gunicorn workers survived SIGKILL")

    def stop(self) -> None:
        """Graceful stop (SIGTERM), SIGKILL if it lingers."""
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> Gunicorn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.close()
