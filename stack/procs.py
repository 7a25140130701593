"""Background processes of the local stack: pid files, port checks, health waits, clean stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class StackError(RuntimeError):
    """A service could not be started or stopped; the message says which and why."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file` if that process is still alive, else None."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def spawn(command: Sequence[str], *, log_file: Path, pid_file: Path, env: dict[str, str] | None = None) -> int:
    """Start `command` detached from this process group, output appended to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    pid_file.write_text(f"{process.pid}\n")
    return process.pid


def wait_until(
    check: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    log_file: Path | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll `check` until true; fail naming `what` (and the log tail) on timeout or early exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            raise StackError(f"{what} exited during start-up{log_tail(log_file)}")
        time.sleep(0.25)
    raise StackError(f"{what} did not become healthy within {timeout:.0f}s{log_tail(log_file)}")


def log_tail(log_file: Path | None, lines: int = 15) -> str:
    if log_file is None or not log_file.exists():
        return ""
    tail = log_file.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log_file}:\n  " + "\n  ".join(tail)


def terminate(pid_file: Path, *, timeout: float = 30.0, leader_only: bool = False) -> bool:
    """SIGTERM the process group in `pid_file`, SIGKILL after `timeout`; True if something was stopped.

    With `leader_only`, SIGTERM goes to the leader alone and the rest of its group is swept once it has
    exited: a PySpark driver must outlive the JVM it started, to stop its queries through it cleanly.
    """
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    try:
        (os.kill if leader_only else os.killpg)(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid(pid_file) is not None:
        _reap(pid)
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)  # what is left: the whole group after a timeout, or stragglers
    except (ProcessLookupError, PermissionError):
        pass
    gone = time.monotonic() + 10  # a killed child of ours must be waited for, or it outlives us as a zombie
    while _reap(pid) and time.monotonic() < gone:
        time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return True


def kill(pid_file: Path) -> bool:
    """SIGKILL the process group in `pid_file` at once, no SIGTERM first: a crash, for failure tests."""
    pid = read_pid(pid_file)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and read_pid(pid_file) is not None:
        _reap(pid)
        time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> bool:
    """Wait for `pid` if it is a child of this very process that has exited (a zombie looks alive until it is
    waited for). True while it is a child that has not exited yet."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False  # not our child, or already reaped
    return done == 0


def ensure_port_free(host: str, port: int, *, service: str, setting: str) -> None:
    if port_open(host, port):
        raise StackError(
            f"{service}: port {port} on {host} is already taken by another process; "
            f"stop it or choose another port with {setting}"
        )


def java() -> str:
    """The java binary: $JAVA_HOME/bin/java when set, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate and candidate.exists():
        return str(candidate)
    return "java"
