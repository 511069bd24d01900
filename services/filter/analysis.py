"""Per-image analysis, run in parallel: decode, normalise, hash, measure, read text.

Each finished analysis is appended to `<work_dir>/analyses.jsonl` (after its normalised image is
written), so a run killed halfway resumes where it stopped and only the dropped/kept decision is
redone. The normalised images of a batch go into one pack file, `<work_dir>/clean-<random>.pack`,
each at the offset its analysis records.
"""

from __future__ import annotations

import base64
import concurrent.futures as futures
import errno
import hashlib
import json
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import simplejpeg
import xxhash

from services.common.storage import sha256_hex
from services.filter.dedup import perceptual_hash
from services.filter.imaging import DecodeError, decode, encode, fit_within, normalise_pixels
from services.filter.matching import MATCH_SIDE, content_box, fine_detail, match_copy
from services.filter.params import FilterOptions
from services.filter.quality import MEASURE_SIDE, measure_grey
from services.filter.text import TextDetector, make_text_detector

# A task carries several pictures: one task a picture cost the parent ~0.9 ms of CPU each
# (pickling, queueing, waking) on cores the workers need; 8 a task took 2,000 pictures from
# ~120 to ~150 images/s on 2 cores.
IMAGES_PER_TASK = 8
BYTES_PER_TASK = 16 * 1024 * 1024
MAX_IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True)
class AnalysisConfig:
    """Everything a worker needs; picklable."""

    options: FilterOptions
    max_pixels: int
    ocr_side: int = 512
    tessdata_dir: str | None = None  # Tesseract language data; None: found (text.find_tessdata_dir)
    text_model: str | None = None  # the DB text-detection model; None: found (text_model.find_detection_model)
    thumbnail_side: int = 128


@dataclass
class ImageAnalysis:
    item_id: str
    reason: str | None = None  # set when the image is unusable before any comparison
    detail: str = ""
    width: int = 0
    height: int = 0
    pixel_hash: str | None = None  # xxh3-128 of the normalised pixels and the picture's size
    phash: str | None = None  # 16 hex digits
    # Hashes of the picture without its frame, of the mirrored picture and of it without its frame.
    variant_hashes: list[str] = field(default_factory=list)
    content_share: float = 1.0  # of the picture inside a uniform frame or letterbox bars
    content_pixels: int = 0  # the content's pixels at the resolution it was decoded at
    fine_detail: float = 0.0  # matching.fine_detail: low for an upscaled copy
    blur: float | None = None  # 0 sharp … 1 blurry (quality.blur_score)
    std: float | None = None
    entropy: float | None = None
    text_words: int = 0
    text_area: float = 0.0
    text_sample: str = ""
    text_read: bool = False  # the text detector read it (not switched off, not screened out)
    clean_file: str | None = None  # the normalised image's name: <sha256>.<extension>
    clean_sha256: str | None = None
    clean_pack: str | None = None  # the pack file in the work dir that holds its bytes and its match copy …
    clean_offset: int = 0  # … from this offset
    clean_size: int = 0
    match_offset: int = 0  # the grey copy keypoints are matched on (matching.match_copy), in the same pack
    match_size: int = 0
    thumbnail: str = ""  # data: URI for the contact sheet

    @property
    def phash_int(self) -> int:
        return int(self.phash or "0", 16)

    @property
    def hashes(self) -> list[int]:
        """The picture's hash, then its variant hashes (frameless content, mirrored, mirrored content)."""
        return [self.phash_int, *(int(value, 16) for value in self.variant_hashes)]

    def read_clean(self, work_dir: Path) -> bytes:
        """The normalised image's bytes, from its pack."""
        if not self.clean_file:
            raise ValueError(f"{self.item_id} has no normalised image (it was dropped before encoding)")
        data = self._read_packed(work_dir, self.clean_offset, self.clean_size)
        if sha256_hex(data) != self.clean_sha256:
            raise ValueError(f"{self.item_id}'s normalised image in {self.clean_pack} is not what was written")
        return data

    def read_match_copy(self, work_dir: Path) -> bytes:
        if not self.match_size:
            raise ValueError(f"{self.item_id} has no match copy (it was dropped before one was made)")
        return self._read_packed(work_dir, self.match_offset, self.match_size)

    def _read_packed(self, work_dir: Path, offset: int, size: int) -> bytes:
        with (work_dir / (self.clean_pack or "")).open("rb") as pack:
            pack.seek(offset)
            data = pack.read(size)
        if len(data) != size:
            raise ValueError(f"{self.clean_pack} ends before {self.item_id}'s bytes do")
        return data

    @property
    def pack_end(self) -> int:
        """Where this analysis's last bytes in its pack end (0: it wrote none)."""
        return max(self.clean_offset + self.clean_size if self.clean_file else 0, self.match_offset + self.match_size)


class CleanPack:
    """The file the normalised images of a batch are appended to.

    A file per picture cost ~1 ms each to create on the test machine's ext4 (an eighth of an
    analysis); appending costs 0.04 ms. The file is created on the first image, so a batch that
    keeps nothing leaves no file; a crash leaves bytes no journal line points at, which are ignored.
    """

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.name = ""
        self._file: BinaryIO | None = None
        self._size = 0

    def append(self, data: bytes) -> tuple[str, int]:
        """Write `data` at the end: (the pack's name, the offset)."""
        if self._file is None:
            self.name, self._size = f"clean-{uuid.uuid4().hex}.pack", 0
            self._file = (self.work_dir / self.name).open("xb", buffering=0)  # written through: no late errors
        offset = self._size
        try:
            if self._file.write(data) != len(data):
                raise OSError(errno.ENOSPC, f"short write to {self.name}")
        except OSError:
            self.close()  # it may end in part of an image: the next one starts a new pack
            raise
        self._size += len(data)
        return self.name, offset

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> CleanPack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def quality_problems(analysis: ImageAnalysis, options: FilterOptions) -> list[tuple[str, str]]:
    """(reason, detail) of every check an image that decodes fails, most telling first; empty when it passes."""
    problems = []
    if (analysis.std or 0.0) < options.uniform_std_threshold or (
        analysis.entropy or 0.0
    ) < options.uniform_entropy_threshold:
        problems.append(("uniform", f"grey std {analysis.std}, entropy {analysis.entropy} bits"))
    if (analysis.blur or 0.0) > options.blur_threshold:
        problems.append(("blurry", f"blur score {analysis.blur} > {options.blur_threshold}"))
    if analysis.text_words >= options.text_max_words or analysis.text_area >= options.text_max_area:
        sample = analysis.text_sample[:60]
        problems.append(("text", f"{analysis.text_words} words over {analysis.text_area:.1%}: {sample}"))
    return problems


def options_digest(config: AnalysisConfig) -> str:
    """Names the cache folder: a change of any option that alters an analysis starts afresh."""
    payload = json.dumps([config.options.model_dump(mode="json"), config.max_pixels, config.ocr_side])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _describe_content(
    analysis: ImageAnalysis, pixels: np.ndarray, measured_grey: np.ndarray, hash_method: str, pack: CleanPack
) -> None:
    """The frame-independent and mirrored hashes, the content's size and fine detail, and the match copy."""
    # The frame is found on a copy of at most 256 px: a row's spread over 256 columns, not 2,000.
    small = cv2.cvtColor(fit_within(pixels, MATCH_SIDE), cv2.COLOR_RGB2GRAY)
    top, bottom, left, right = content_box(small)
    content = small[top:bottom, left:right]
    scale = pixels.shape[0] / small.shape[0]
    full_content = pixels[round(top * scale) : round(bottom * scale), round(left * scale) : round(right * scale)]
    analysis.content_share = round(content.size / small.size, 4)
    analysis.content_pixels = int(full_content.shape[0] * full_content.shape[1])
    analysis.fine_detail = round(fine_detail(full_content), 4)
    analysis.variant_hashes = [
        f"{perceptual_hash(picture, hash_method):016x}"
        for picture in (content, measured_grey[:, ::-1], content[:, ::-1])
    ]
    data = match_copy(content)
    analysis.clean_pack, analysis.match_offset = pack.append(data)
    analysis.match_size = len(data)


def _thumbnail(pixels: np.ndarray, side: int) -> str:
    small = fit_within(pixels, side)
    return "data:image/jpeg;base64," + base64.b64encode(simplejpeg.encode_jpeg(small, 70)).decode()


def analyse_image(
    item_id: str, data: bytes, config: AnalysisConfig, detector: TextDetector, pack: CleanPack
) -> ImageAnalysis:
    options = config.options
    try:
        # Nothing downstream needs more than the larger of the output and measuring sides.
        decoded = decode(data, config.max_pixels, options.background, shrink_to=max(options.size, MEASURE_SIDE))
    except DecodeError as error:
        return ImageAnalysis(item_id, reason=error.reason, detail=str(error))
    pixels = decoded.pixels
    analysis = ImageAnalysis(item_id, width=decoded.full_size[0], height=decoded.full_size[1])
    if min(decoded.full_size) < options.min_side:
        analysis.thumbnail = _thumbnail(pixels, config.thumbnail_side)
        analysis.reason, analysis.detail = "too_small", f"{analysis.width}x{analysis.height} < {options.min_side}"
        return analysis
    # One resize from the source to the measuring copy; the output comes from it unless it is larger.
    # Sharpness and text are judged at one fixed resolution: a small output size must neither make
    # every picture look blurry nor shrink a watermark below what OCR can read.
    measured = normalise_pixels(pixels, MEASURE_SIDE, options.mode, options.background)
    clean = (
        measured
        if options.size == MEASURE_SIDE
        else normalise_pixels(
            measured if options.size < MEASURE_SIDE else pixels, options.size, options.mode, options.background
        )
    )
    # Exact duplicates: a hash of the normalised pixels (with the picture's size), not of the file, so
    # re-encodes and metadata edits still match; equal normalised pixels are the same training picture.
    # xxh3-128 rather than MD5: 0.02 ms instead of 1.3 ms for 512² pixels, and no attacker to resist
    # (a match only names a near-duplicate group's member "exact").
    pixel_digest = xxhash.xxh3_128(f"{analysis.width}x{analysis.height}".encode())
    pixel_digest.update(clean)  # the array's buffer, not a copy of it
    analysis.pixel_hash = pixel_digest.hexdigest()
    analysis.thumbnail = _thumbnail(clean, config.thumbnail_side)
    grey = cv2.cvtColor(measured, cv2.COLOR_RGB2GRAY)
    # The hash of the normalised picture, not of the file: what a near duplicate repeats is the training
    # picture, so a wide still and a square crop of its middle are near duplicates too.
    analysis.phash = f"{perceptual_hash(grey, options.hash_method):016x}"
    _describe_content(analysis, pixels, grey, options.hash_method, pack)
    scores = measure_grey(grey)
    analysis.blur, analysis.std, analysis.entropy = (
        round(scores.blur, 4),
        round(scores.std, 3),
        round(scores.entropy, 3),
    )
    if not quality_problems(analysis, options):  # a blurry or near-uniform picture needs no reading
        finding = detector.detect(measured, grey)
        analysis.text_words, analysis.text_area, analysis.text_sample = finding.words, finding.area, finding.sample
        analysis.text_read = finding.read
    if quality_problems(analysis, options):
        return analysis  # dropped whatever the others are, so never kept: no output to encode
    encoded, extension, _ = encode(clean, options.output_format, options.jpeg_quality)
    analysis.clean_sha256 = sha256_hex(encoded)
    analysis.clean_file = f"{analysis.clean_sha256}.{extension}"
    _, analysis.clean_offset = pack.append(encoded)
    analysis.clean_size = len(encoded)
    return analysis


# One detector per worker process or thread (a Tesseract engine loads once, and serves one thread).
_worker = threading.local()


def _init_worker(config: AnalysisConfig, owner_pid: int | None = None) -> None:
    """Set up a worker thread or process; a process also leaves when `owner_pid` (the pool's owner) is gone."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # Tesseract's OpenMP threads fight the pool for cores
    cv2.setNumThreads(1)  # likewise OpenCV's own thread pool
    options = config.options
    _worker.detector = make_text_detector(
        options.text_detector, config.ocr_side, config.tessdata_dir, options.text_prescreen, config.text_model
    )
    if owner_pid is not None:
        threading.Thread(target=exit_when_gone, args=(owner_pid,), name="owner-watch", daemon=True).start()


OWNER_CHECK_S = 1.0


def exit_when_gone(owner_pid: int, interval_s: float = OWNER_CHECK_S) -> None:
    """End this process once `owner_pid` no longer exists.

    A pool worker whose owner was SIGKILLed (the OOM killer, a killed Celery worker) never learns of
    it: it holds both ends of its own task queue, so it waits for work forever, and keeps the
    forkserver alive with it.
    """
    while True:
        time.sleep(interval_s)
        try:
            os.kill(owner_pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass  # it exists (under another user): keep waiting


def _analyse_safely(item_id: str, data: bytes, config: AnalysisConfig, pack: CleanPack) -> ImageAnalysis:
    if getattr(_worker, "detector", None) is None:
        _init_worker(config)
    try:
        return analyse_image(item_id, data, config, _worker.detector, pack)
    except Exception as error:  # an image that breaks a library is reported, never crashes the run
        return ImageAnalysis(item_id, reason="undecodable", detail=f"{type(error).__name__}: {error}")


JOURNAL = "analyses.jsonl"


def load_journal(work_dir: Path) -> dict[str, ImageAnalysis]:
    """The analyses a previous run finished, by item id; a line cut short by a crash is skipped."""
    path = work_dir / JOURNAL
    if not path.is_file():
        return {}
    finished = {}
    pack_sizes: dict[str, int] = {}
    for line in path.read_text().splitlines():
        try:
            analysis = ImageAnalysis(**json.loads(line))
        except (ValueError, TypeError):
            continue
        if not analysis.pack_end:  # dropped before anything was packed: nothing to find
            finished[analysis.item_id] = analysis
            continue
        if not analysis.clean_pack:
            continue
        if analysis.clean_pack not in pack_sizes:
            pack = work_dir / analysis.clean_pack
            pack_sizes[analysis.clean_pack] = pack.stat().st_size if pack.is_file() else -1
        if pack_sizes[analysis.clean_pack] >= analysis.pack_end:
            finished[analysis.item_id] = analysis
    return finished


def _make_executor(workers: int, config: AnalysisConfig) -> futures.Executor:
    """Processes, unless this is a daemonic process (a Celery prefork child) that may not have children."""
    if multiprocessing.current_process().daemon:
        return futures.ThreadPoolExecutor(workers, initializer=_init_worker, initargs=(config,))
    # forkserver: forking a process that runs threads (heartbeats, Celery) can copy a held lock.
    context = multiprocessing.get_context("forkserver")
    # The server imports the analysis stack (OpenCV, SciPy, Pillow: ~0.5 s) once; workers fork from it ready.
    # Also what the workers would import on first use: imagehash's phash imports scipy.fftpack (0.24 s a
    # worker without bytecode caches), the text pre-screen its compiled line grouping (0.4 s), the OCR
    # detectors tesserocr and onnxruntime (skipped by the server where missing).
    context.set_forkserver_preload(
        [
            __name__,
            "scipy.fftpack",
            "services.filter.text_lines",
            "tesserocr",
            "services.filter.text_model",
            "onnxruntime",
        ]
    )
    return futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(config, os.getpid())
    )


def analyse_all(
    items: Iterable[tuple[str, Callable[[], bytes]]],
    config: AnalysisConfig,
    work_dir: Path,
    workers: int,
    on_done: Callable[[ImageAnalysis], None] = lambda analysis: None,
) -> dict[str, ImageAnalysis]:
    """Analyse (item id, byte loader) pairs, `workers` at a time; cached analyses are reused."""
    work_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, ImageAnalysis] = {}
    finished = load_journal(work_dir)
    # One file for the whole run rather than one per image: creating and renaming a file per
    # picture cost ~0.4 ms, a few per cent of an analysis. A crash loses at most the line being written.
    with (work_dir / JOURNAL).open("a", encoding="utf-8") as journal:
        if journal.tell():
            journal.write("\n")  # ends a line a crash cut short, which load_journal skipped

        def finish(analysis: ImageAnalysis, cached: bool = False) -> None:
            results[analysis.item_id] = analysis
            if not cached:
                journal.write(json.dumps(asdict(analysis)) + "\n")
                journal.flush()
            on_done(analysis)

        pending_items = []
        for item_id, load in items:
            if item_id in finished:
                finish(finished[item_id], cached=True)
            else:
                pending_items.append((item_id, load))
        if workers <= 1 or len(pending_items) <= 1:
            for batch in _batches(pending_items):
                for analysis in _analyse_batch(batch, config, work_dir):
                    finish(analysis)
            return results
        with _make_executor(workers, config) as executor:
            in_flight: set[futures.Future[list[ImageAnalysis]]] = set()
            for batch in _batches(pending_items):
                # Bounded: only a few batches' bytes are held in memory at once.
                if len(in_flight) >= workers * MAX_IN_FLIGHT_PER_WORKER:
                    done, in_flight = futures.wait(in_flight, return_when=futures.FIRST_COMPLETED)
                    for future in done:
                        for analysis in future.result():
                            finish(analysis)
                in_flight.add(executor.submit(_analyse_batch, batch, config, work_dir))
            for future in futures.as_completed(in_flight):
                for analysis in future.result():
                    finish(analysis)
    return results


def _batches(items: list[tuple[str, Callable[[], bytes]]]) -> Iterator[list[tuple[str, bytes]]]:
    """The items' bytes, loaded a batch at a time: up to IMAGES_PER_TASK pictures or BYTES_PER_TASK bytes."""
    batch: list[tuple[str, bytes]] = []
    size = 0
    for item_id, load in items:
        data = load()
        batch.append((item_id, data))
        size += len(data)
        if len(batch) == IMAGES_PER_TASK or size >= BYTES_PER_TASK:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _analyse_batch(batch: list[tuple[str, bytes]], config: AnalysisConfig, work_dir: Path) -> list[ImageAnalysis]:
    with CleanPack(work_dir) as pack:  # closed (its bytes written) before the parent journals the batch
        return [_analyse_safely(item_id, data, config, pack) for item_id, data in batch]
