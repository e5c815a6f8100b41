"""A real Prefect server, a process work pool and a worker, all separate processes on 127.0.0.1:
``corpusforge serve --work-pool`` registers a scheduled deployment and exits, a
``prefect worker start --pool POOL --type process`` worker picks up a triggered run and builds it,
and the run, its output and its report artifacts are checked through the Prefect API.

Unlike the other flow tests this does not use Prefect's test harness: the server is
``prefect server start`` with its own SQLite database in a temporary PREFECT_HOME.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flows.report import artifact_keys

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"  # never anything else: the test must not reach beyond loopback
CLI = [sys.executable, "-c", "from flows.cli import main; main()"]
PREFECT = [sys.executable, "-m", "prefect"]
POOL = "corpusforge-test-pool"
CRON = "0 3 * * *"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _start(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """A background process in its own process group, its output in ``log`` (a file, not a pipe,
    so a chatty process never blocks on a full pipe)."""
    with log.open("wb") as handle:
        return subprocess.Popen(args, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGINT to the process group (a clean shutdown), SIGKILL to it if that takes too long."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(log: Path, lines: int = 80) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return f"--- {log.name} ---\n" + "\n".join(text.splitlines()[-lines:])


def _wait_for_health(url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert server.poll() is None, f"prefect server exited ({server.returncode})\n{_tail(log)}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {timeout:.0f} s\n{_tail(log)}")


def test_serve_to_a_process_work_pool_and_a_worker_runs_it(corpus: Path, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path / "prefect-home"
    home.mkdir()
    port = _free_port()
    api_url = f"http://{HOST}:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_PROFILES_PATH": str(home / "profiles.toml"),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # poll the pool every second, not every 10
    }
    # The worker finds the flow by module path (flows.build) through the installed package, not
    # through PYTHONPATH or its working directory (an empty folder here).
    env.pop("PYTHONPATH", None)

    recipe = tmp_path / "pooled.yaml"
    recipe.write_text(
        f"name: pooled\nstages: [ingest]\ningest:\n  paths: [{corpus}]\n"
        "spark:\n  master: local[1]\n  driver_memory: 1g\n"
        "orchestration:\n  retries: 0\n"
    )
    out = tmp_path / "pooled-out"
    worker_dir = tmp_path / "worker-cwd"
    worker_dir.mkdir()
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"

    server = _start([*PREFECT, "server", "start", "--host", HOST, "--port", str(port)], env, server_log, tmp_path)
    worker = None
    flow_run_id = None
    try:
        _wait_for_health(api_url, server, server_log)

        # A pool that does not exist: an error saying how to create it, nothing registered.
        missing = subprocess.run(
            [*CLI, "serve", str(recipe), "--work-pool", "no-such-pool", "--out", str(out)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
        assert missing.returncode == 2, missing.stdout + missing.stderr
        assert "prefect work-pool create no-such-pool --type process" in " ".join(missing.stderr.split())

        created = subprocess.run(
            [*PREFECT, "work-pool", "create", POOL, "--type", "process"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
        assert created.returncode == 0, created.stdout + created.stderr

        served = subprocess.run(
            [*CLI, "serve", str(recipe), "--work-pool", POOL, "--cron", CRON, "--timezone", "Europe/Berlin", "--out", str(out)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
        assert served.returncode == 0, served.stdout + served.stderr
        assert "deployment: corpusforge-build/pooled" in served.stdout
        assert f"prefect worker start --pool {POOL} --type process" in served.stdout

        worker = _start([*PREFECT, "worker", "start", "--pool", POOL, "--type", "process"], env, worker_log, worker_dir)

        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("corpusforge-build/pooled")
            assert deployment.work_pool_name == POOL
            assert deployment.entrypoint == "flows.build.build_corpus"
            [schedule] = deployment.schedules
            assert schedule.schedule.cron == CRON and schedule.schedule.timezone == "Europe/Berlin"
            assert schedule.active
            assert deployment.parameters["out_dir"] == str(out.resolve())
            assert deployment.parameters["recipe"]["ingest"]["paths"] == [str(corpus)]

            flow_run = run_deployment("corpusforge-build/pooled", timeout=0)  # queue it; the worker runs it
            flow_run_id = flow_run.id
            deadline = time.time() + 300
            while True:
                flow_run = client.read_flow_run(flow_run_id)
                if flow_run.state is not None and flow_run.state.is_final():
                    break
                assert worker.poll() is None, f"worker exited ({worker.returncode})\n{_tail(worker_log)}"
                assert time.time() < deadline, f"run still {flow_run.state_name} after 300 s\n{_tail(worker_log)}"
                time.sleep(1)
            assert flow_run.state.is_completed(), f"{flow_run.state}\n{_tail(worker_log)}"
            assert flow_run.deployment_id == deployment.id and flow_run.work_pool_name == POOL
            assert f"submitting flow run '{flow_run_id}'" in worker_log.read_text(), _tail(worker_log)

            assert (out / "ingest" / "_SUCCESS").is_file()
            report_key, funnel_key = artifact_keys("pooled")
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[report_key, funnel_key])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            )
            by_key = {a.key: a for a in artifacts}
            assert set(by_key) == {report_key, funnel_key}, artifacts
            assert by_key[report_key].type == "markdown" and "ingest" in by_key[report_key].data
            assert by_key[funnel_key].type == "table"
    finally:
        if flow_run_id is not None:  # a run left going (a failed assertion): kill it, and its JVM
            try:
                with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
                    left = client.read_flow_run(flow_run_id)
                if not (left.state and left.state.is_final()) and left.infrastructure_pid:
                    _kill_group(int(left.infrastructure_pid.rsplit(":", 1)[-1]))
            except Exception:
                pass
        if worker is not None:
            _stop(worker)  # before the server, so that it can say goodbye to it
        _stop(server)
