"""Download throughput: our crawler vs img2dataset on the same URL list from a loopback server.

    .venv/bin/python bench/crawl_bench.py --images 2000 --latency-ms 50

A separate process serves N distinct JPEGs over HTTP/1.1 (keep-alive) on 127.0.0.1, sleeping
`--latency-ms` before each response (a CDN's time to first byte). Each downloader runs in its
own child process so its CPU time (user+sys, children included) is measured apart from the
server's. Both keep the bytes as they are (img2dataset with all re-encoding disabled), and
afterwards every output file is hashed: "lost" are URLs without a stored image, "dup" are
images stored more than once. img2dataset needs `pip install img2dataset` (the bench extra).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import multiprocessing
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # img2dataset imports it; it phones home otherwise


def _jpeg(index: int, side: int) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (side, side), (index % 256, (index // 256) % 256, 90))
    image.putpixel((index % side, (index // side) % side), (255, 255, 255))  # distinct bytes per index
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


async def _serve(images: list[bytes], latency_s: float, port_out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await reader.readuntil(b"\r\n\r\n"):
                path = request.split(b" ", 2)[1].decode()
                await asyncio.sleep(latency_s)
                index = int(path.rsplit("/", 1)[-1].split(".", 1)[0])
                body = images[index]
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port_out.put(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def _server_main(count: int, side: int, latency_s: float, port_out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    images = [_jpeg(index, side) for index in range(count)]
    asyncio.run(_serve(images, latency_s, port_out))


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(run: Callable[[], object], results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Time the download call only: each tool's imports are done before the clock starts."""
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    run()
    results.put((time.perf_counter() - started, _cpu_seconds() - cpu_started))


def _run_ours(url_file: Path, out_dir: Path, concurrency: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from services.crawler.crawl import Tally, ingest_urls
    from services.crawler.fetcher import Fetcher
    from services.crawler.outputs import Candidate, FolderManifest, FolderSink
    from services.crawler.settings import CrawlerSettings

    # One loopback host serves everything here, so the per-host cap is lifted to the global one.
    settings = CrawlerSettings(
        _env_file=None, ssrf_allow=["127.0.0.1/32"], concurrency=concurrency, per_host_concurrency=concurrency
    )

    async def go() -> None:
        candidates = [Candidate(url=url, origin="url-list") for url in url_file.read_text().split()]
        manifest = FolderManifest(out_dir)
        sink = FolderSink(out_dir, settings.max_pixels)
        async with Fetcher(settings) as fetcher:
            await ingest_urls(candidates, {}, fetcher, sink, manifest, Tally(), lambda _: None, concurrency)
        manifest.close()

    _timed(lambda: asyncio.run(go()), results)


def _run_img2dataset(url_file: Path, out_dir: Path, concurrency: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from img2dataset import download

    options = {
        "url_list": str(url_file),
        "input_format": "txt",
        "output_folder": str(out_dir),
        "output_format": "files",
        "processes_count": 1,
        "thread_count": concurrency,
        "resize_mode": "no",
        "disable_all_reencoding": True,
        "number_sample_per_shard": 100_000,
        "timeout": 10,
        "retries": 0,
        "enable_wandb": False,
        "distributor": "multiprocessing",
    }
    _timed(lambda: download(**options), results)


RUNNERS = {"ghibli-lora crawler": _run_ours, "img2dataset": _run_img2dataset}


def _measure(name: str, url_file: Path, out_dir: Path, concurrency: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one downloader's download call, run in a child process."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=RUNNERS[name], args=(url_file, out_dir, concurrency, results))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"{name} exited with {child.exitcode}")
    return results.get(timeout=10)


def _stored_images(out_dir: Path) -> list[str]:
    return [
        hashlib.sha256(path.read_bytes()).hexdigest()
        for path in out_dir.rglob("*.jpg")
        if not path.name.startswith(".")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--side", type=int, default=128, help="Image width and height in pixels.")
    parser.add_argument("--concurrency", type=int, default=64, help="Our downloads in flight; img2dataset threads.")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    server = context.Process(
        target=_server_main, args=(args.images, args.side, args.latency_ms / 1000, port_queue), daemon=True
    )
    server.start()
    port = port_queue.get(timeout=120)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="crawl-bench-") as scratch:
            url_file = Path(scratch) / "urls.txt"
            url_file.write_text("".join(f"http://127.0.0.1:{port}/img/{index}.jpg\n" for index in range(args.images)))
            for name in RUNNERS:
                out_dir = Path(scratch) / name.replace(" ", "_")
                wall, cpu = _measure(name, url_file, out_dir, args.concurrency)
                digests = _stored_images(out_dir)
                distinct = len(set(digests))
                rows.append((name, wall, cpu, len(digests), args.images - distinct, len(digests) - distinct))
    finally:
        server.kill()

    reference = rows[-1]
    print(
        f"\n{args.images} JPEGs {args.side}x{args.side}, {args.latency_ms:.0f} ms latency, "
        f"concurrency {args.concurrency}, {os.cpu_count()} CPUs (shared)\n"
    )
    header = "| wall s | img/s | CPU s | img/CPU-s | stored | lost | dup | img/s ratio | per-core ratio |"
    print(f"| {'downloader':<20} {header}")
    print(f"|{'-' * 22}|-------:|------:|------:|----------:|-------:|-----:|----:|------------:|---------------:|")
    for name, wall, cpu, stored, lost, duplicated in rows:
        rate, per_cpu = stored / wall, stored / max(cpu, 1e-9)
        ratio = rate / (reference[3] / reference[1])
        cpu_ratio = per_cpu / (reference[3] / max(reference[2], 1e-9))
        print(
            f"| {name:<20} | {wall:6.2f} | {rate:5.0f} | {cpu:5.2f} | {per_cpu:9.0f} | {stored:6d} | {lost:4d} | "
            f"{duplicated:3d} | {ratio:11.2f} | {cpu_ratio:14.2f} |"
        )


if __name__ == "__main__":
    main()
