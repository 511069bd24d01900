"""Job-submission latency and throughput of the gateway on loopback.

Starts an S3 server (moto, in its own process), uses Redis (GHIBLI_BENCH_REDIS_URL, default db 14 on 127.0.0.1) and
runs the API under uvicorn, then sends `POST /v1/jobs/filter` at a fixed rate (open loop: requests
are sent on schedule whether or not earlier ones finished). The reference row is `GET /healthz`
at the same rate in the same run: the floor set by uvicorn, HTTP and the client.

    python bench/api_bench.py --rate 200 --seconds 10

Goal (issue 7): p99 under 50 ms at 200 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import free_port  # noqa: E402


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit("the API exited during start-up")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the API did not start")


async def _open_loop(url: str, method: str, path: str, body: dict | None, rate: float, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                response = await client.request(method, path, json=body)
                if response.is_error:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - started)

        tasks = []
        begin = time.perf_counter()
        total = int(rate * seconds)
        for index in range(total):
            delay = begin + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    latencies.sort()
    return {
        "requests": total,
        "errors": errors,
        "rps": total / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def _measure_api(env: dict[str, str], rate: float, seconds: float) -> tuple[dict, dict]:
    """Start the API with `env`; return (GET /healthz, POST /v1/jobs/filter) rows at `rate`."""
    api_port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "services.api.app:create_app",
         "--port", str(api_port), "--log-level", "warning"],
        env=env,
        cwd=ROOT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{api_port}"
    try:
        _wait_healthy(url, api)
        body = {"dataset_id": httpx.post(f"{url}/v1/datasets", json={"name": "bench"}).json()["id"]}
        asyncio.run(_open_loop(url, "POST", "/v1/jobs/filter", body, 50, 1))  # warm pools and imports
        reference = asyncio.run(_open_loop(url, "GET", "/healthz", None, rate, seconds))
        return reference, asyncio.run(_open_loop(url, "POST", "/v1/jobs/filter", body, rate, seconds))
    finally:
        api.terminate()
        api.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    import redis

    redis_url = os.environ.get("GHIBLI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(redis_url).flushdb()
    s3_port = free_port()
    # Its own process: in this one it would compete with the load generator for the GIL.
    s3 = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_env = {**os.environ, "PYTHONPATH": str(ROOT), "GHIBLI_REDIS_URL": redis_url}
    rows: list[tuple[str, dict]] = []
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            for store_name, store_env in (
                ("S3 (moto)", {"GHIBLI_S3_ENDPOINT": f"127.0.0.1:{s3_port}", "GHIBLI_S3_BUCKET": "bench"}),
                ("local store", {"GHIBLI_DATA_DIR": data_dir}),
            ):
                reference, submit = _measure_api({**base_env, **store_env}, args.rate, args.seconds)
                rows += [(f"GET /healthz, {store_name}", reference), (f"POST /v1/jobs, {store_name}", submit)]
                redis.Redis.from_url(redis_url).flushdb()
    finally:
        s3.terminate()
        s3.wait(timeout=10)

    print(f"\nopen loop at {args.rate:.0f} requests/s for {args.seconds:.0f} s, API on loopback (uvicorn, 1 process)")
    print("each POST row's reference is the GET /healthz row above it, measured against the same API process\n")
    print(f"{'request':<30}{'sent':>7}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99 / ref':>11}")
    for index, (name, row) in enumerate(rows):
        reference = rows[index - index % 2][1]
        print(
            f"{name:<30}{row['requests']:>7}{row['errors']:>8}{row['rps']:>9.1f}"
            f"{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['p99_ms'] / reference['p99_ms']:>11.2f}"
        )
    for name, row in rows[1::2]:
        verdict = "met" if row["p99_ms"] < 50 and row["errors"] == 0 else "NOT met"
        print(f"goal p99 < 50 ms at {args.rate:.0f} req/s with no errors, {name}: {verdict}")


if __name__ == "__main__":
    main()
