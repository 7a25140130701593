"""A Spark standalone cluster on this machine: a master and workers from the Spark that pyspark ships.

`meetup-stack up` starts it when SPARK_MASTER is a `spark://` address on loopback, e.g.

    SPARK_MASTER=spark://127.0.0.1:7077 make stack-up     # master + SPARK_WORKERS workers (default 2)
    SPARK_MASTER=spark://127.0.0.1:7077 .venv/bin/meetup-submit pipelines/chain.py

Each worker offers SPARK_WORKER_CORES cores and SPARK_WORKER_MEMORY memory and runs in its own process
group, so killing one (`kill_worker`) takes its executors with it, as losing a machine would. Workers are
started with the stack's environment, so executors find the S3 credentials through the AWS provider chain.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyspark

from common.settings import Settings
from stack import procs

NAME = "spark"
SPARK_HOME = Path(pyspark.__file__).resolve().parent
LOOPBACK = ("127.0.0.1", "localhost")


def wanted(settings: Settings) -> bool:
    """Whether SPARK_MASTER names a standalone master this machine should run."""
    master = urlparse(settings.spark.master)
    return master.scheme == "spark" and master.hostname in LOOPBACK


def _dir(settings: Settings) -> Path:
    return settings.stack_dir / "spark"


def _master(settings: Settings) -> tuple[str, int]:
    master = urlparse(settings.spark.master)
    return master.hostname or "127.0.0.1", master.port or 7077


def _environment(settings: Settings) -> dict[str, str]:
    # The settings' variables (the S3 keys among them), for executors whose S3A falls back to the environment.
    env = settings.child_env(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1", SPARK_NO_DAEMONIZE="1")
    java = procs.java()
    if java != "java":
        env.setdefault("JAVA_HOME", str(Path(java).parent.parent))
    return env


def _class(name: str) -> list[str]:
    return [str(SPARK_HOME / "bin" / "spark-class"), name]


def master_state(settings: Settings, timeout: float = 2) -> dict[str, Any] | None:
    """The master's JSON status (workers, applications), or None when it does not answer."""
    url = f"http://127.0.0.1:{settings.spark.master_webui_port}/json/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            state: dict[str, Any] = json.load(response)
            return state
    except (OSError, ValueError):
        return None


def alive_workers(state: dict[str, Any] | None) -> int:
    return 0 if state is None else sum(worker.get("state") == "ALIVE" for worker in state.get("workers", []))


def healthy(settings: Settings) -> bool:
    return alive_workers(master_state(settings)) >= settings.spark.workers


def pid_files(settings: Settings) -> list[Path]:
    """The master's pid file, then every worker's."""
    base = _dir(settings)
    return [base / "master.pid", *sorted(base.glob("worker-*/worker.pid"))]


def start_worker(settings: Settings, number: int) -> None:
    """Start worker `number` (1-based) unless it runs; does not wait for it to register."""
    base = _dir(settings) / f"worker-{number}"
    if procs.read_pid(base / "worker.pid") is not None:
        return
    host, port = _master(settings)
    command = [
        *_class("org.apache.spark.deploy.worker.Worker"),
        f"spark://{host}:{port}",
        "--host",
        "127.0.0.1",
        "--cores",
        str(settings.spark.worker_cores),
        "--memory",
        settings.spark.worker_memory,
        "--webui-port",
        str(settings.spark.master_webui_port + number),
        "--work-dir",
        str(base / "work"),
    ]
    procs.spawn(command, log_file=base / "worker.log", pid_file=base / "worker.pid", env=_environment(settings))


def kill_worker(settings: Settings, number: int) -> bool:
    """SIGKILL worker `number` and its executors at once (what losing its machine looks like)."""
    return procs.kill(_dir(settings) / f"worker-{number}" / "worker.pid")


def up(settings: Settings) -> str:
    base = _dir(settings)
    host, port = _master(settings)
    if procs.read_pid(base / "master.pid") is None:
        procs.ensure_port_free(host, port, service=NAME, setting="SPARK_MASTER")
        procs.ensure_port_free(
            "127.0.0.1", settings.spark.master_webui_port, service=NAME, setting="SPARK_MASTER_WEBUI_PORT"
        )
        command = [
            *_class("org.apache.spark.deploy.master.Master"),
            "--host",
            host,
            "--port",
            str(port),
            "--webui-port",
            str(settings.spark.master_webui_port),
        ]
        procs.spawn(command, log_file=base / "master.log", pid_file=base / "master.pid", env=_environment(settings))
        procs.wait_until(
            lambda: master_state(settings) is not None,
            what="spark master",
            timeout=60,
            log_file=base / "master.log",
            alive=lambda: procs.read_pid(base / "master.pid") is not None,
        )
    for number in range(1, settings.spark.workers + 1):
        start_worker(settings, number)
    procs.wait_until(
        lambda: healthy(settings), what="spark workers", timeout=60, log_file=base / "worker-1" / "worker.log"
    )
    return (
        f"{NAME:<10} {settings.spark.master}  (standalone: {settings.spark.workers} workers x "
        f"{settings.spark.worker_cores} core, {settings.spark.worker_memory}; "
        f"UI http://127.0.0.1:{settings.spark.master_webui_port}, logs {base})"
    )


def down(settings: Settings) -> bool:
    master, *workers = pid_files(settings)
    stopped = [procs.terminate(pid_file, timeout=30) for pid_file in [*workers, master]]  # workers first
    return any(stopped)


def status(settings: Settings) -> tuple[str, bool]:
    state = master_state(settings)
    if state is None:
        return f"{NAME:<10} {settings.spark.master:<28} stopped", False
    alive = alive_workers(state)
    ok = alive >= settings.spark.workers
    workers = f"{alive} of {settings.spark.workers} workers alive"
    return f"{NAME:<10} {settings.spark.master:<28} {'healthy' if ok else 'degraded'}, {workers}", ok
