"""The S3-compatible object store: S3Proxy over a local directory, served on S3_ENDPOINT."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from common import health
from common.settings import Settings
from stack import procs

NAME = "s3"
HEAP = "-Xmx256m"
LOGGING = Path(__file__).with_name("s3proxy-logback.xml")  # WARN; logback's default would be DEBUG


def _dir(settings: Settings) -> Path:
    return settings.stack_dir / "s3"


def healthy(settings: Settings) -> bool:
    endpoint = urlparse(settings.s3.endpoint)
    if not procs.port_open(endpoint.hostname or "127.0.0.1", endpoint.port or 80):
        return False
    try:
        health.check_s3(settings, require_bucket=False, timeout=2)
    except health.ServiceUnavailable:
        return False
    return True


def s3proxy_conf(settings: Settings, data_dir: Path) -> str:
    endpoint = urlparse(settings.s3.endpoint)
    if not settings.s3.has_keys:
        raise procs.StackError("s3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set (meetup-stack up sets them)")
    return "\n".join(
        [
            f"s3proxy.endpoint=http://{endpoint.hostname}:{endpoint.port}",
            "s3proxy.authorization=aws-v2-or-v4",
            f"s3proxy.identity={settings.s3.access_key_id}",
            f"s3proxy.credential={settings.s3.secret_access_key}",
            "jclouds.provider=filesystem",
            f"jclouds.filesystem.basedir={data_dir}",
            "",
        ]
    )


def up(settings: Settings) -> str:
    base = _dir(settings)
    pid_file, log_file, data_dir = base / "s3proxy.pid", base / "s3proxy.log", base / "data"
    endpoint = urlparse(settings.s3.endpoint)
    if procs.read_pid(pid_file) is None:
        procs.ensure_port_free(
            endpoint.hostname or "127.0.0.1", endpoint.port or 80, service=NAME, setting="S3_ENDPOINT"
        )
        jars = settings.stack_dir / "jars" / "s3proxy"
        if not any(jars.glob("s3proxy-*.jar")):
            raise procs.StackError(f"s3: no S3Proxy jars in {jars}; run `make jars`")
        data_dir.mkdir(parents=True, exist_ok=True)
        conf = base / "s3proxy.conf"
        conf.write_text(s3proxy_conf(settings, data_dir))
        conf.chmod(0o600)
        procs.spawn(
            [
                procs.java(),
                HEAP,
                f"-Dlogback.configurationFile={LOGGING}",
                "-cp",
                f"{jars}/*",
                "org.gaul.s3proxy.Main",
                "--properties",
                str(conf),
            ],  # fmt: skip
            log_file=log_file,
            pid_file=pid_file,
        )
    procs.wait_until(
        lambda: healthy(settings),
        what=NAME,
        timeout=60,
        log_file=log_file,
        alive=lambda: procs.read_pid(pid_file) is not None,
    )
    ensure_bucket(settings)
    return f"{NAME:<10} {settings.s3.endpoint}  (S3Proxy, bucket {settings.bucket}, log {log_file})"


def ensure_bucket(settings: Settings) -> None:
    if settings.bucket is None:
        return
    s3 = health.s3_client(settings)
    try:
        s3.head_bucket(Bucket=settings.bucket)
    except ClientError:
        s3.create_bucket(Bucket=settings.bucket)


def down(settings: Settings) -> bool:
    return procs.terminate(_dir(settings) / "s3proxy.pid")


def status(settings: Settings) -> tuple[str, bool]:
    """A status line and whether the service is healthy."""
    running = procs.read_pid(_dir(settings) / "s3proxy.pid") is not None
    ok = healthy(settings)
    state = "healthy" if ok else ("running but not answering" if running else "stopped")
    return f"{NAME:<10} {settings.s3.endpoint:<28} {state}", ok
