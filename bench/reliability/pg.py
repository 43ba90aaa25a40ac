"""A private PostgreSQL cluster in a temp folder, on its own port, that a scenario may stop and
restart at will (the machine's shared server on 5432 is never touched)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

USER = "rel"


def _bin_dir() -> Path:
    """The newest PostgreSQL server binaries installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


def _version(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except ValueError:
        return 0


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Cluster:
    """initdb + pg_ctl on a temp data folder; trust auth on loopback only."""

    def __init__(self, port: int = 55432) -> None:
        while not _port_free(port):
            port += 1
        self.port = port
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="rel-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        # initdb and postgres refuse to run as root: run them as the postgres account then.
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, str(self.bin / tool), *args],
            check=check,
            capture_output=True,
            text=True,
            cwd=self.root,
        )

    def url(self, database: str) -> str:
        """SQLAlchemy/psycopg URL of a database in this cluster."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def init(self) -> Cluster:
        """Create the cluster, with PostgreSQL's durable defaults."""
        # fsync and synchronous_commit stay on: with them off, the crash of scenario c loses
        # transactions the service had already confirmed, which no application can survive.
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 200\n"
                "shared_buffers = 128MB\n"
            )
        return self

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop (fast: disconnect clients, roll back open transactions)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        """Whether the postmaster is up."""
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def create_database(self, name: str) -> str:
        """A fresh database; returns its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def wait_ready(self, limit: float = 30.0) -> None:
        """Until a connection succeeds."""
        deadline = time.time() + limit
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def destroy(self) -> None:
        """Stop and delete everything."""
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
