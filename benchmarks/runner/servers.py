"""Starting and stopping the servers of a run: the Tarn binary, and a throwaway PostgreSQL
15 cluster (initdb into the run's temporary folder, loopback only, trust authentication,
user and database `tarn`, defaults except `maintenance_work_mem`; as user postgres when
this runs as root)."""
from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

from common import connect, log

PG_SETTINGS = {"maintenance_work_mem": "1GB"}  # pgvector's advice: the HNSW graph fits in memory


def dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=tarn dbname=tarn"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no owner
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_ready(port: int, alive, seconds: float = 60) -> None:
    """Until a connection succeeds; raises if the server died or never answered."""
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        if not alive():
            raise RuntimeError(f"the server on port {port} exited while starting")
        try:
            connect(dsn(port)).close()
            return
        except Exception as e:  # not yet listening
            last = e
            time.sleep(0.2)
    raise RuntimeError(f"no connection to port {port} after {seconds} s: {last}")


class Tarn:
    def __init__(self, binary: pathlib.Path, data, port: int, logfile: pathlib.Path, extra=()):
        """`data` is a folder or a warehouse URL; `extra` more arguments (`--config FILE`)."""
        self.binary, self.data, self.port, self.logfile = binary, data, port, logfile
        self.extra = list(extra)
        self.proc = None
        self.dsn = dsn(port)

    def start(self) -> None:
        if not port_free(self.port):
            raise RuntimeError(f"port {self.port} is taken (pick another with --tarn-port)")
        log(f"starting {self.binary} --data {self.data} --listen 127.0.0.1:{self.port}")
        out = open(self.logfile, "ab")
        # The embedding model (the embed suite): fetched once into TARN_MODELS.
        models = os.environ.get("TARN_MODELS", "/var/tmp/tarn-bench-models")
        subprocess.run([str(self.binary), "--models", models, "models", "fetch"], stdout=out,
                       stderr=subprocess.STDOUT, check=False)
        self.proc = subprocess.Popen([str(self.binary), "--data", str(self.data), "--listen",
                                      f"127.0.0.1:{self.port}", "--models", models, *self.extra],
                                     stdout=out, stderr=subprocess.STDOUT)
        wait_ready(self.port, self.alive)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Postgres:
    def __init__(self, bindir: pathlib.Path, folder: pathlib.Path, port: int):
        self.bindir, self.folder, self.port = bindir, folder, port
        self.data = folder / "pg"
        self.logfile = folder / "pg.log"
        self.dsn = dsn(port)
        self.started = False

    def _run(self, *args) -> None:
        """A PostgreSQL program, as user postgres when we are root (initdb refuses root)."""
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        if not port_free(self.port):
            raise RuntimeError(f"port {self.port} is taken (pick another with --pg-port)")
        self.data.mkdir(parents=True)
        self.logfile.touch()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
            shutil.chown(self.logfile, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "tarn")
        opts = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 " + " ".join(
            f"-c {k}={v}" for k, v in PG_SETTINGS.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", opts, "-w", "start")
        self.started = True
        with connect(f"host=127.0.0.1 port={self.port} user=tarn dbname=postgres") as c:
            c.execute("CREATE DATABASE tarn")

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "stop")
            except subprocess.CalledProcessError as e:
                log(f"pg_ctl stop failed: {e.stderr.decode(errors='replace')}")
            self.started = False
