"""A Spark standalone cluster on 127.0.0.1, started from the pyspark installation itself
(``bin/spark-class``: one master, N workers). Used by the cluster test and by
``bench.scaling``, where a separate executor JVM lets driver and executor memory be told apart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_class(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    import pyspark

    home = Path(pyspark.__file__).parent
    environment = {
        **os.environ,
        "SPARK_HOME": str(home),
        # No REST submission server (it would take a fixed port) and no JVM chatter on stdout.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        **(env or {}),
    }
    handle = open(log, "w")
    return subprocess.Popen(
        [str(home / "bin" / "spark-class"), *args],
        env=environment,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@dataclass
class StandaloneCluster:
    """``with StandaloneCluster(root) as cluster: ... cluster.master_url ...``

    ``root`` holds the daemons' logs, the workers' work directories and their scratch space
    (``SPARK_LOCAL_DIRS``: shuffle files and spills, see :attr:`local_dirs`).
    """

    root: Path
    workers: int = 1
    cores_per_worker: int = 2
    memory_per_worker: str = "2g"
    start_timeout_s: float = 120.0
    master_url: str = ""
    ui_port: int = 0
    _processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def local_dirs(self) -> list[Path]:
        return [self.root / f"worker-{i}" / "scratch" for i in range(self.workers)]

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as reply:
                return sum(w.get("state") == "ALIVE" for w in json.load(reply).get("workers", []))
        except OSError:
            return 0

    def __enter__(self) -> "StandaloneCluster":
        self.root.mkdir(parents=True, exist_ok=True)
        port, self.ui_port = free_port(), free_port()
        self.master_url = f"spark://127.0.0.1:{port}"
        self._processes.append(
            _spark_class(
                "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                "--webui-port", str(self.ui_port), log=self.root / "master.log",
            )
        )
        for i, scratch in enumerate(self.local_dirs):
            scratch.mkdir(parents=True, exist_ok=True)
            self._processes.append(
                _spark_class(
                    "org.apache.spark.deploy.worker.Worker", self.master_url, "--host", "127.0.0.1",
                    "--cores", str(self.cores_per_worker), "--memory", self.memory_per_worker,
                    "--webui-port", str(free_port()), "--work-dir", str(self.root / f"worker-{i}" / "work"),
                    log=self.root / f"worker-{i}.log", env={"SPARK_LOCAL_DIRS": str(scratch)},
                )
            )
        try:
            deadline = time.time() + self.start_timeout_s
            while self.alive_workers() < self.workers:
                for process, log in zip(self._processes, self._logs()):
                    if process.poll() is not None:
                        raise RuntimeError(f"a Spark daemon exited: {log}\n{log.read_text()[-2000:]}")
                if time.time() > deadline:
                    raise RuntimeError(f"the Spark workers did not register with the master within {self.start_timeout_s:.0f} s")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        return self

    def _logs(self) -> list[Path]:
        return [self.root / "master.log", *(self.root / f"worker-{i}.log" for i in range(self.workers))]

    def stop(self) -> None:
        for process in reversed(self._processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self._processes.clear()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
