"""Container healthcheck for an HTTP service: exit 0 only when URL answers 2xx within the timeout.

Usage: `python http_healthcheck.py URL [TIMEOUT_S]`. A script rather than `python -c "..."` in the compose
file: podman's Docker API splits a healthcheck's arguments at spaces, which breaks inline code there.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

DEFAULT_TIMEOUT_S = 5.0


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: http_healthcheck.py URL [TIMEOUT_S]", file=sys.stderr)
        return 2
    url = argv[0]
    timeout_s = float(argv[1]) if len(argv) == 2 else DEFAULT_TIMEOUT_S
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"{url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
