"""Metrics where operators already look: an HTTP endpoint in Prometheus's text format, per long-running command.

`meetup-ingest` serves `/metrics` on 127.0.0.1:9101 and `meetup-chain` on 127.0.0.1:9102 (`--metrics-port`
to change, 0 turns it off). Each process registers its own metrics in prometheus_client's default
registry, which also carries the process's own (`process_resident_memory_bytes`,
`process_cpu_seconds_total`...). Spark's metrics are served by Spark itself, on its UI port (see
`pipelines.exporter.SPARK_CONF`). docs/operations.md, "Metrics for Prometheus", lists the names and a scrape
configuration.
"""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from common.cli import USAGE, CommandError

log = logging.getLogger(__name__)

INGEST_PORT = 9101
CHAIN_PORT = 9102


def serve(port: int | None, default: int, what: str, *, address: str = "127.0.0.1") -> str | None:
    """Serve the default registry on http://address:port/metrics; returns its URL, or None when off.

    `port` is what the command line said: 0 turns the endpoint off; a port given and already taken ends the
    command with one line (exit status 2), before anything starts; with None the default port is used, and
    if another process holds it (a second chain on the machine) the command goes on without an endpoint,
    saying so: metrics must never stop the data.
    """
    if port == 0:
        return None
    chosen = default if port is None else port
    try:
        start_http_server(chosen, addr=address)
    except OSError as error:
        message = f"metrics port {chosen} on {address} cannot be served ({error.strerror or error})"
        if port is not None:
            raise CommandError(f"{message}; choose another with --metrics-port (0: off)", status=USAGE) from None
        log.warning("%s; running without a metrics endpoint (--metrics-port to choose one)", message)
        return None
    url = f"http://{address}:{chosen}/metrics"
    log.info("%s metrics on %s", what, url)
    return url
