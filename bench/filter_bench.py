"""Filter benchmark: throughput and near-duplicate search, side by side with imagededup and cleanvision.

    .venv/bin/python bench/filter_bench.py    # 5,000 web-sized images, 3 rounds, 1M hashes: ~15 min on 2 cores
    .venv/bin/python bench/filter_bench.py --images 600 --repeat 1 --million-distances 6   # quick run
    .venv/bin/python bench/filter_bench.py --source-size 1920x1080 --million-distances ""
    .venv/bin/python bench/filter_bench.py --dataset-dir /tmp/filter-bench   # make the pictures once, reuse them

Synthetic pictures: distinct scenes plus near-duplicate variants of some of them (rescaled, JPEG
q=30, 5%-area crop, colour shift), so precision/recall of duplicate detection has ground truth;
one original in 20 carries a rendered caption (its variants too), so OCR runs as often as on a crawl.
Sizes follow WEB_SIZES by default (what an image search for film characters returns, by our
reading of such results: mostly HD wallpapers and stills; an assumption, not a survey), or one
fixed size. Decoding dominates both tools, and how much depends on the size: say which you ran.
imagededup and cleanvision are the `bench` extra's; each is skipped with a note if missing.
imagededup requires torchvision, which does not install beside the CPU torch here: install it with
`pip install cleanvision scikit-learn PyWavelets`, then `pip install --no-deps imagededup`; its
CNN module is stubbed out before import (PHash does not use it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
import types
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.storage import sha256_hex
from services.filter.analysis import AnalysisConfig, analyse_all
from services.filter.dedup import group_by_hash
from services.filter.params import FilterOptions
from services.filter.run import FilterInput, default_workers, filter_images
from services.filter.selection import decide
from tests.filter.fixtures import colour_shifted, cropped, encoded, recompressed, rescaled, scene, with_text

VARIANTS = (
    ("rescaled", lambda image: rescaled(image, 0.6)),
    ("jpeg30", lambda image: recompressed(image, 30)),
    ("crop5", lambda image: cropped(image, 0.025)),
    ("shift", colour_shifted),
)


# (width, height, share): HD stills and wallpapers, smaller web pictures, QHD and 4K wallpapers,
# phone-shaped fan art (Pinterest serves 736 px wide), older 4:3 pictures.
WEB_SIZES = (
    (1920, 1080, 0.40),
    (1280, 720, 0.15),
    (2560, 1440, 0.15),
    (3840, 2160, 0.10),
    (736, 1104, 0.10),
    (1024, 768, 0.10),
)
TEXT_SHARE = 0.05


def _write_group(folder: Path, group: int, size: tuple[int, int], variants: list[int], text: bool) -> list[str]:
    original = scene(10_000 + group, size)
    if text:
        original = with_text(original, "STUDIO WALLPAPERS HD")
    pictures = [(f"{group:06d}-orig.jpg", original)]
    pictures += [(f"{group:06d}-{VARIANTS[i][0]}.jpg", VARIANTS[i][1](original)) for i in variants]
    for name, picture in pictures:
        (folder / name).write_bytes(encoded(picture, "JPEG", quality=92))
    return [name for name, _ in pictures]


def make_dataset(folder: Path, count: int, size: tuple[int, int] | None = None, seed: int = 0) -> dict[str, int]:
    """Write about `count` JPEGs (in parallel); return file name → ground-truth group (variants share it).

    `size` None draws each original's size from WEB_SIZES.
    """
    rng = np.random.default_rng(seed)
    plans, planned, group = [], 0, 0
    while planned < count:
        width, height, _ = WEB_SIZES[rng.choice(len(WEB_SIZES), p=[share for *_, share in WEB_SIZES])]
        variants: list[int] = []
        if rng.random() < 0.25:  # a quarter of the originals get 1-2 variants
            variants = [int(i) for i in rng.choice(len(VARIANTS), size=int(rng.integers(1, 3)), replace=False)]
        variants = variants[: count - planned - 1]
        plans.append((group, size or (int(width), int(height)), variants, bool(rng.random() < TEXT_SHARE)))
        planned += 1 + len(variants)
        group += 1
    with concurrent.futures.ProcessPoolExecutor() as pool:
        written = pool.map(_write_group, itertools.repeat(folder), *zip(*plans, strict=True), chunksize=16)
        return {name: plan[0] for plan, names in zip(plans, written, strict=True) for name in names}


def reuse_or_make_dataset(root: Path, count: int, size: tuple[int, int] | None) -> tuple[Path, dict[str, int]]:
    """`make_dataset` into `root`/pictures, unless a run with the same count and size left it there."""
    folder, truth_file = root / "pictures", root / "truth.json"
    wanted = {"count": count, "size": size and list(size)}
    if truth_file.is_file():
        saved = json.loads(truth_file.read_text())
        if saved["dataset"] == wanted and all((folder / name).is_file() for name in saved["groups"]):
            return folder, saved["groups"]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    groups = make_dataset(folder, count, size)
    truth_file.write_text(json.dumps({"dataset": wanted, "groups": groups}))
    return folder, groups


def pair_set(groups: dict[str, object]) -> set[tuple[str, str]]:
    members: dict[object, list[str]] = defaultdict(list)
    for name, label in groups.items():
        members[label].append(name)
    return {tuple(sorted(pair)) for names in members.values() for pair in itertools.combinations(names, 2)}


def precision_recall(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float]:
    hits = len(found & truth)
    return hits / max(1, len(found)), hits / max(1, len(truth))


def run_ours(folder: Path, names: list[str], distance: int, text_detector: str, workers: int) -> dict[str, object]:
    options = FilterOptions(near_duplicate_distance=distance, text_detector=text_detector, min_side=128)
    config = AnalysisConfig(options=options, max_pixels=64_000_000)
    item_of = {name: sha256_hex((folder / name).read_bytes()) for name in names}
    names_of: dict[str, list[str]] = defaultdict(list)
    for name, item_id in item_of.items():
        names_of[item_id].append(name)
    items = [(item_id, (folder / same[0]).read_bytes) for item_id, same in names_of.items()]
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        analyses = analyse_all(items, config, Path(work), workers)
        ordered = [analyses[item_id] for item_id in names_of]
        search_started = time.perf_counter()
        decisions = decide(ordered, {}, options, lambda analysis: analysis.read_match_copy(Path(work)))
        finished = time.perf_counter()
    groups: dict[str, object] = {}
    for name, item_id in item_of.items():
        if decisions[item_id].group is not None:
            groups[name] = decisions[item_id].group
        elif len(names_of[item_id]) > 1:  # files with the same bytes are one item, and one group
            groups[name] = f"bytes {item_id}"
    return {
        "total_s": finished - started,
        "search_s": finished - search_started,
        "pairs": pair_set(groups),
        "text_read": sum(analysis.text_read for analysis in ordered),
        "decisions": {name: decisions[item_id] for name, item_id in item_of.items()},
    }


def run_imagededup(folder: Path, distance: int) -> dict[str, object] | str:
    _stub_imagededup_cnn()
    try:
        from imagededup.methods import PHash
    except ImportError as error:
        return f"not importable: {error}"
    hasher = PHash(verbose=False)
    started = time.perf_counter()
    encodings = hasher.encode_images(image_dir=str(folder))
    search_started = time.perf_counter()
    duplicates = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=distance)
    finished = time.perf_counter()
    pairs = {tuple(sorted((name, other))) for name, others in duplicates.items() for other in others}
    return {"total_s": finished - started, "search_s": finished - search_started, "pairs": pairs}


def run_cleanvision(folder: Path) -> dict[str, object] | str:
    try:
        from cleanvision import Imagelab
    except ImportError as error:
        return f"not importable: {error}"
    started = time.perf_counter()
    lab = Imagelab(data_path=str(folder))
    lab.find_issues({"exact_duplicates": {}, "near_duplicates": {}, "blurry": {}, "low_information": {}}, verbose=False)
    total_s = time.perf_counter() - started
    pairs = set()
    for issue in ("exact_duplicates", "near_duplicates"):
        for names in lab.info[issue]["sets"]:
            pairs |= {tuple(sorted(Path(p).name for p in pair)) for pair in itertools.combinations(names, 2)}
    return {"total_s": total_s, "search_s": float("nan"), "pairs": pairs}


def naive_all_pairs_s(hashes: np.ndarray, distance: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(hashes), 512):
        block = hashes[start : start + 512]
        np.nonzero(np.bitwise_count(block[:, None] ^ hashes[None, :]) <= distance)
    return time.perf_counter() - started


def million_hash_timing(distance: int, count: int = 1_000_000) -> tuple[float, int]:
    rng = np.random.default_rng(distance)
    hashes = rng.integers(0, 2**64 - 1, count, dtype=np.uint64, endpoint=True)
    near = hashes[: count // 100].copy()  # 1% planted near copies, `distance` bits flipped at most
    for bit in range(distance):
        near ^= (rng.random(len(near)) < 0.5).astype(np.uint64) << np.uint64(bit * 3)
    values = np.concatenate([hashes, near]).tolist()
    started = time.perf_counter()
    labels = group_by_hash(values, distance)
    return time.perf_counter() - started, len(values) - len(set(labels))


def interleaved_runs(
    tools: list[tuple[str, Callable[[], dict[str, object] | str]]], repeat: int
) -> dict[str, list[dict[str, object] | str]]:
    """Each tool `repeat` times, in rounds whose order rotates, so a slow spell of a shared machine
    lands on every tool rather than on one."""
    runs: dict[str, list[dict[str, object] | str]] = {label: [] for label, _ in tools}
    for round_number in range(repeat):
        for label, run in tools[round_number % len(tools) :] + tools[: round_number % len(tools)]:
            runs[label].append(run())
    return runs


def print_table(
    runs: dict[str, list[dict[str, object] | str]],
    names: list[str],
    truth: set[tuple[str, str]],
    args: argparse.Namespace,
) -> None:
    reference_label = next(iter(runs))
    reference_rates = [len(names) / float(run["total_s"]) for run in runs[reference_label] if isinstance(run, dict)]  # type: ignore[arg-type]
    sizes = "real pictures" if args.real else f"originals {args.source_size}"
    print(f"\nworkers={args.workers}, distance={args.distance}, {sizes}, rounds={args.repeat}")
    print("images/s and search time: medians over the rounds; the range is of the ratio within each round.")
    print("| tool | images/s | × imagededup | range | dup search s | precision | recall |")
    print("|---|---|---|---|---|---|---|")
    for label, outcomes in runs.items():
        done = [outcome for outcome in outcomes if isinstance(outcome, dict)]
        if not done:
            print(f"| {label} | {outcomes[0]} | | | | | |")
            continue
        rates = [len(names) / float(outcome["total_s"]) for outcome in done]  # type: ignore[arg-type]
        ratio = statistics.median(rates) / statistics.median(reference_rates) if reference_rates else float("nan")
        paired = [rate / reference for rate, reference in zip(rates, reference_rates, strict=False)]
        spread = f"{min(paired):.2f}–{max(paired):.2f}" if len(paired) > 1 else ""
        search_s = statistics.median(float(outcome["search_s"]) for outcome in done)  # type: ignore[arg-type]
        precision, recall = precision_recall(done[-1]["pairs"], truth)  # type: ignore[arg-type]
        print(
            f"| {label} | {statistics.median(rates):.1f} | {ratio:.2f} | {spread} | {search_s:.3f} "
            f"| {precision:.3f} | {recall:.3f} |"
        )
        if done[-1].get("text_read"):
            print(f"{label}: the text pre-screen sent {done[-1]['text_read']} of {len(names)} images to OCR")


def components(names: list[str], pairs: set[tuple[str, str]]) -> dict[str, str]:
    """Name → a representative of its connected component under `pairs`."""
    parent = {name: name for name in names}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for first, second in pairs:
        parent[root(first)] = root(second)
    return {name: root(name) for name in names}


def run_ours_on_files(files: list[object], text_detector: str, workers: int) -> dict[str, object]:
    """The whole filter (analysis, grouping, report entries) on the real-picture corpus."""
    inputs = [
        FilterInput(sha256_hex(file.data), lambda data=file.data: data, {"source": file.name})  # type: ignore[attr-defined]
        for file in files
    ]
    config = AnalysisConfig(options=FilterOptions(text_detector=text_detector), max_pixels=64_000_000)
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        outcome = filter_images(inputs, config, Path(work), workers)
        total_s = time.perf_counter() - started
    groups = {entry["source"]: entry["group"] for entry in outcome.entries if entry["group"] is not None}
    return {
        "total_s": total_s,
        "search_s": float("nan"),
        "pairs": pair_set(groups),  # type: ignore[arg-type]
        "entries": outcome.entries,
    }


def imagededup_thresholds(folder: Path, truth: set[tuple[str, str]]) -> list[tuple[int, float, float]]:
    """(threshold, precision, recall) of imagededup PHash at every even threshold 0–32."""
    from imagededup.methods import PHash

    hasher = PHash(verbose=False)
    encodings = hasher.encode_images(image_dir=str(folder))
    rows = []
    for threshold in range(0, 33, 2):
        duplicates = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=threshold)
        found = {tuple(sorted((name, other))) for name, others in duplicates.items() for other in others}
        rows.append((threshold, *precision_recall(found, truth)))  # type: ignore[arg-type]
    return rows


def cleanvision_blur(folder: Path) -> dict[str, bool] | str:
    try:
        from cleanvision import Imagelab
    except ImportError as error:
        return f"not importable: {error}"
    lab = Imagelab(data_path=str(folder))
    lab.find_issues({"blurry": {}, "low_information": {}}, verbose=False)
    return {Path(path).name: bool(row["is_blurry_issue"]) for path, row in lab.issues.iterrows()}


def real_pictures(args: argparse.Namespace) -> None:
    """The real-picture corpus (tests/filter/real_corpus.py): per kind of copy, text, blur; every tool on it."""
    from tests.filter import real_corpus

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "pictures"
        files = real_corpus.write(folder)
        names = [file.name for file in files]
        truth = pair_set({file.name: file.group for file in files if file.group})
        print(f"{len(names)} real-picture files, {len(truth)} true duplicate pairs")
        _stub_imagededup_cnn()
        tools: list[tuple[str, Callable[[], dict[str, object] | str]]] = [
            ("imagededup PHash, threshold 10 (reference)", lambda: run_imagededup(folder, 10)),
            ("ours, text off", lambda: run_ours_on_files(files, "none", args.workers)),
            ("ours, full", lambda: run_ours_on_files(files, args.text_detector, args.workers)),
        ]
        runs = interleaved_runs(tools, args.repeat)
        if not args.skip_cleanvision:
            runs["cleanvision (dups, blur, low-info)"] = [run_cleanvision(folder)]
        sweep = imagededup_thresholds(folder, truth)
        cleanvision_blurry = cleanvision_blur(folder) if not args.skip_cleanvision else "skipped"
    print_table(runs, names, truth, args)

    print("\nimagededup PHash over thresholds: " + ", ".join(f"{t}: P {p:.2f} R {r:.2f}" for t, p, r in sweep))
    usable = [(r, t, p) for t, p, r in sweep if p >= 0.95]
    if usable:
        recall, threshold, precision = max(usable)
        print(
            f"imagededup's best threshold at precision ≥ 0.95: {threshold} "
            f"(precision {precision:.3f}, recall {recall:.3f})"
        )

    print("\nshare of each kind of copy in one group with its original:")
    kinds = list(real_corpus.COPY_KINDS)
    print("| tool | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for label, outcomes in runs.items():
        done = [outcome for outcome in outcomes if isinstance(outcome, dict)]
        if not done:
            continue
        component = components(names, done[-1]["pairs"])  # type: ignore[arg-type]
        shares = []
        for kind in kinds:
            copies = [file for file in files if file.kind == kind]
            together = sum(component[file.name] == component[f"{file.group}.jpg"] for file in copies)
            shares.append(f"{together / len(copies):.2f}")
        print(f"| {label} | " + " | ".join(shares) + " |")

    full = next(outcome for outcome in runs["ours, full"] if isinstance(outcome, dict))
    print("\nours, full:\n" + real_corpus.score(full["entries"], files).table())  # type: ignore[arg-type]
    if isinstance(cleanvision_blurry, dict):
        blurred = [file.name for file in files if file.blur_radius >= 2]
        sharp = [file.name for file in files if file.blur_radius == 0 and not file.uniform]
        print(
            f"cleanvision blurry: {sum(cleanvision_blurry.get(name, False) for name in blurred)}/{len(blurred)} found, "
            f"{sum(cleanvision_blurry.get(name, False) for name in sharp)} of {len(sharp)} unblurred files flagged"
        )


def _stub_imagededup_cnn() -> None:
    for name, attribute in (("imagededup.methods.cnn", "CNN"), ("imagededup.utils.models", "CustomModel")):
        if name not in sys.modules:  # torchvision-only modules PHash never touches
            stub = types.ModuleType(name)
            setattr(stub, attribute, None)
            sys.modules[name] = stub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--distance", type=int, default=FilterOptions().near_duplicate_distance)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--million-distances", default="4,6,10", help="Comma list; empty skips the 1M timing.")
    parser.add_argument("--skip-cleanvision", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="Rounds of imagededup and ours (cleanvision runs once).")
    parser.add_argument("--source-size", default="web", help="'web' (the WEB_SIZES mix) or WxH of every original.")
    parser.add_argument(
        "--dataset-dir",
        type=Path,
        help="Keep the generated pictures here and reuse them on the next run with the same --images and sizes.",
    )
    parser.add_argument(
        "--real", action="store_true", help="The real-picture corpus instead: recall per kind of copy, text, blur."
    )
    parser.add_argument("--text-detector", default=FilterOptions().text_detector, help="For the full run.")
    args = parser.parse_args()
    if args.real:
        real_pictures(args)
        return

    with tempfile.TemporaryDirectory() as temporary:
        made = time.perf_counter()
        size = None if args.source_size == "web" else tuple(int(side) for side in args.source_size.split("x"))
        folder, truth_groups = reuse_or_make_dataset(args.dataset_dir or Path(temporary), args.images, size)  # type: ignore[arg-type]
        names = sorted(truth_groups)
        truth = pair_set(truth_groups)
        print(f"{len(names)} images, {len(truth)} true duplicate pairs, made in {time.perf_counter() - made:.0f}s")

        tools: list[tuple[str, Callable[[], dict[str, object] | str]]] = [
            ("imagededup PHash (reference)", lambda: run_imagededup(folder, args.distance)),
            ("ours, OCR off", lambda: run_ours(folder, names, args.distance, "none", args.workers)),
            ("ours, full (text on)", lambda: run_ours(folder, names, args.distance, args.text_detector, args.workers)),
        ]
        runs = interleaved_runs(tools, args.repeat)
        if not args.skip_cleanvision:
            runs["cleanvision (dups, blur, low-info)"] = [run_cleanvision(folder)]
    print_table(runs, names, truth, args)

    hashes = np.random.default_rng(1).integers(0, 2**63, len(names), dtype=np.uint64)
    print(f"\nnaive all-pairs search over {len(names)} hashes: {naive_all_pairs_s(hashes, args.distance):.3f}s")
    for distance in filter(None, args.million_distances.split(",")):
        seconds, merged = million_hash_timing(int(distance))
        print(f"1,010,000 hashes, distance {distance}: multi-index grouping {seconds:.1f}s ({merged} merged)")


if __name__ == "__main__":
    main()
