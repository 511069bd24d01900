"""Container healthcheck for a Celery worker: exit 0 only when this container's own node answers a ping.

Usage: `python worker_healthcheck.py QUEUE|NODE@HOST [TIMEOUT_S]`; a bare QUEUE means node `QUEUE@<hostname>`,
as docker-compose.yml names its workers. Pinging the node itself, rather than checking
that a process exists, catches a worker that is alive but has lost its broker connection.
"""

from __future__ import annotations

import socket
import sys

DEFAULT_TIMEOUT_S = 10.0


def node_name(queue_or_node: str) -> str:
    return queue_or_node if "@" in queue_or_node else f"{queue_or_node}@{socket.gethostname()}"


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: worker_healthcheck.py QUEUE|NODE@HOST [TIMEOUT_S]", file=sys.stderr)
        return 2
    node = node_name(argv[0])
    timeout_s = float(argv[1]) if len(argv) == 2 else DEFAULT_TIMEOUT_S
    from services.common.celery_app import celery_app  # after the usage check: it reads settings

    replies = celery_app.control.ping(destination=[node], timeout=timeout_s)
    if any(node in reply for reply in replies):
        return 0
    print(f"celery node {node} did not answer a ping within {timeout_s:g}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
