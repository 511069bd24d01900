"""Near duplicates, blur, near-uniform and text: each check on generated pictures."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from services.filter import dedup
from services.filter.analysis import AnalysisConfig, CleanPack, analyse_image
from services.filter.dedup import group_by_hash, near_pairs, perceptual_hash
from services.filter.params import FilterOptions
from services.filter.quality import measure_quality
from services.filter.text import NoTextDetector, ScreenedDetector, TesseractDetector, TextFinding
from services.filter.text_lines import line_boxes_from_pieces
from tests.filter.fixtures import (
    blurred,
    colour_shifted,
    cropped,
    encoded,
    recompressed,
    rescaled,
    scene,
    with_text,
)

DEFAULTS = FilterOptions()
VARIANTS = {
    "rescaled": lambda image: rescaled(image, 0.5),
    "jpeg-q30": lambda image: recompressed(image, 30),
    "crop-5%": lambda image: cropped(image, 0.025),  # 5% of the area: 2.5% off width and height
    "colour-shift": colour_shifted,
}


def analysed_hash(picture: Image.Image, work_dir: Path) -> int:
    """The perceptual hash the filter gives a picture: of its normalised (512² centre-crop) copy."""
    config = AnalysisConfig(options=FilterOptions(min_side=64, text_detector="none"), max_pixels=10**8)
    with CleanPack(work_dir) as pack:
        analysis = analyse_image("picture", encoded(picture, "PNG"), config, NoTextDetector(), pack)
    assert analysis.reason is None, analysis.detail
    return analysis.phash_int


def test_variants_are_grouped_with_their_original_and_distinct_pictures_are_not(tmp_path: Path) -> None:
    originals = [scene(seed) for seed in range(6)]
    hashes, owners = [], []
    for owner, original in enumerate(originals):
        for picture in [original, *(make(original) for make in VARIANTS.values())]:
            hashes.append(analysed_hash(picture, tmp_path))
            owners.append(owner)
    labels = group_by_hash(hashes, DEFAULTS.near_duplicate_distance)
    for owner in range(len(originals)):
        assert len({label for label, of in zip(labels, owners, strict=True) if of == owner}) == 1
    assert len(set(labels)) == len(originals)


def test_a_square_crop_of_a_wide_still_is_a_near_duplicate_of_it(tmp_path: Path) -> None:
    # Both become the same centre-cropped training picture; a hash of the whole frame would miss it.
    wide = scene(30, (960, 540))
    middle = wide.crop((210, 0, 750, 540))
    other = scene(31, (960, 540))
    hashes = [analysed_hash(picture, tmp_path) for picture in (wide, middle, other)]
    assert dedup.hamming(hashes[0], hashes[1]) <= DEFAULTS.near_duplicate_distance
    assert group_by_hash(hashes, DEFAULTS.near_duplicate_distance) == [0, 0, 1]


def test_many_distinct_pictures_stay_apart() -> None:
    hashes = [perceptual_hash(np.asarray(scene(seed, (320, 240)))) for seed in range(100, 160)]
    assert len(set(group_by_hash(hashes, DEFAULTS.near_duplicate_distance))) == 60


def lines_by_graph_search(stats: np.ndarray) -> list[tuple[float, ...]]:
    """The pre-screen's grouping spelled out with NumPy and SciPy: the reference for the compiled one."""
    left, top, width, height, area = stats[1:].T.astype(np.float64)
    piece = (height >= 6) & (height <= 100) & (width <= 8 * height)
    piece &= (area / (width * height) >= 0.15) & (area / (width * height) <= 0.85)
    left, top, width, height = left[piece], top[piece], width[piece], height[piece]
    taller, shorter = np.maximum.outer(height, height), np.minimum.outer(height, height)
    gap = np.maximum.outer(left, left) - np.minimum.outer(left + width, left + width)
    centre = top + height / 2
    level = np.abs(np.subtract.outer(centre, centre)) < 0.25 * taller
    joined = level & (shorter > 0.5 * taller) & (gap < 0.8 * taller)
    _, group = connected_components(joined, directed=False)
    lines = []
    for label in np.unique(group):
        member = group == label
        span_in_heights = width[member].sum() / height[member].mean()
        if member.sum() >= 3 or (member.sum() >= 2 and span_in_heights >= 4):
            right, bottom = (left + width)[member].max(), (top + height)[member].max()
            lines.append((left[member].min(), top[member].min(), right, bottom))
    return sorted(lines)


@pytest.mark.parametrize("seed", range(6))
def test_the_prescreen_groups_pieces_into_lines_as_a_graph_search_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 200))
    row_heights = rng.integers(4, 110, 6)  # pieces gather on six rows, so lines form among strays
    row = rng.integers(0, 6, count)
    height = np.maximum(1, row_heights[row] * rng.uniform(0.6, 1.2, count)).astype(int)
    width = np.maximum(1, height * rng.uniform(0.2, 9, count)).astype(int)
    top = (row * 80 + rng.normal(0, 4, count) - height / 2).astype(int)
    area = np.maximum(1, width * height * rng.uniform(0.05, 0.95, count)).astype(int)
    stats = np.ascontiguousarray(
        np.vstack([[0, 0, 512, 512, 0], np.stack([rng.integers(0, 480, count), top, width, height, area], 1)]),
        dtype=np.int32,
    )
    found = sorted(map(tuple, line_boxes_from_pieces(stats).tolist()))
    assert found == lines_by_graph_search(stats)
    assert seed != 0 or found  # the generator does make lines


def hashes_with_near_copies(seed: int, count: int, distance: int, cluster: int | None = None) -> np.ndarray:
    """Unique random hashes, a near copy of each (a few bits either side of `distance`), and a tight
    cluster (`cluster` hashes, `count` by default, sharing 48 bits) whose buckets are big enough to split."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64 - 1, count, dtype=np.uint64, endpoint=True)
    flips = np.zeros(count, dtype=np.uint64)
    for index in range(count):
        for bit in rng.choice(64, size=int(rng.integers(0, distance + 3)), replace=False):
            flips[index] |= np.uint64(1) << np.uint64(int(bit))
    members = np.full(cluster or count, base[0])
    for bit in rng.choice(64, size=16, replace=False):
        members ^= (rng.random(len(members)) < 0.5).astype(np.uint64) << np.uint64(int(bit))
    return np.unique(np.concatenate([base, base ^ flips, members]))


def all_close_pairs(hashes: np.ndarray, distance: int) -> set[tuple[int, int]]:
    return {
        (first, int(second))
        for first in range(len(hashes) - 1)
        for second in np.flatnonzero(np.bitwise_count(hashes[first] ^ hashes[first + 1 :]) <= distance) + first + 1
    }


@pytest.mark.parametrize("distance", [0, 3, 10, 14])
@pytest.mark.parametrize("extra_blocks", [None, 1, 3])
def test_multi_index_search_finds_exactly_the_pairs_all_pairs_comparison_finds(
    distance: int, extra_blocks: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exact at the cost model's block count and at forced ones (tree depth 1 and 3), each pair once."""
    if extra_blocks is not None:
        monkeypatch.setattr(dedup, "choose_blocks", lambda count, distance: max(distance + extra_blocks, 4))
    hashes = hashes_with_near_copies(distance, 600, distance)
    found = [tuple(pair) for pair in near_pairs(hashes, distance).tolist()]
    expected = all_close_pairs(hashes, distance)
    assert found == sorted(expected)
    assert expected or distance == 0


def test_several_threads_find_the_same_groups_as_all_pairs_comparison() -> None:
    """Thread pieces and forests merged: pairs and group labels as from comparing all pairs."""
    distance = DEFAULTS.near_duplicate_distance
    unique = hashes_with_near_copies(7, 3000, distance, cluster=300)
    expected = all_close_pairs(unique, distance)
    assert [tuple(pair) for pair in near_pairs(unique, distance, threads=3).tolist()] == sorted(expected)

    hashes = [*unique.tolist(), *unique[:50].tolist()]  # exact repeats share their label too
    graph = coo_matrix((np.ones(len(expected)), tuple(np.array(sorted(expected)).T)), shape=(len(unique),) * 2)
    _, components = connected_components(graph, directed=False)
    expected_labels = [*components.tolist(), *components[:50].tolist()]

    def first_seen_order(labels: list[int]) -> list[int]:
        order: dict[int, int] = {}
        return [order.setdefault(label, len(order)) for label in labels]

    labels = group_by_hash(hashes, distance, threads=3)
    assert first_seen_order(labels) == first_seen_order(expected_labels)
    assert len(set(labels)) < len(unique)


def test_gaussian_blur_sigma_3_is_flagged_and_the_sharp_original_is_not() -> None:
    for seed in range(4):
        sharp = scene(seed).resize((512, 512))
        assert measure_quality(sharp).blur <= DEFAULTS.blur_threshold
        assert measure_quality(blurred(sharp, 3.0)).blur > DEFAULTS.blur_threshold


def test_near_uniform_pictures_score_low() -> None:
    flat = Image.new("RGB", (512, 512), (120, 130, 140))
    scores = measure_quality(flat)
    assert scores.std < DEFAULTS.uniform_std_threshold and scores.entropy < DEFAULTS.uniform_entropy_threshold
    assert measure_quality(scene(3).resize((512, 512))).std > DEFAULTS.uniform_std_threshold


def rgb_and_grey(picture: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """What a text detector is given: the picture's RGB pixels and its grey copy."""
    return np.asarray(picture.convert("RGB")), np.asarray(picture.convert("L"))


def test_rendered_text_is_found_and_textless_pictures_have_none() -> None:
    detector = TesseractDetector()
    for seed in range(3):
        picture = scene(seed).resize((512, 512))
        assert detector.detect(*rgb_and_grey(picture)).words == 0
        finding = detector.detect(*rgb_and_grey(with_text(picture)))
        assert finding.words >= DEFAULTS.text_max_words or finding.area >= DEFAULTS.text_max_area, finding


class CountingDetector:
    def __init__(self) -> None:
        self.read = 0

    def detect(self, pixels: np.ndarray, grey: np.ndarray) -> TextFinding:
        self.read += 1
        return TextFinding(words=5, area=0.1, sample=f"{grey.shape[1]}")


def test_the_prescreen_sends_pictures_with_text_to_ocr_and_most_textless_ones_not() -> None:
    inner = CountingDetector()
    screened = ScreenedDetector(inner)
    textless = [screened.detect(*rgb_and_grey(scene(seed).resize((512, 512)))) for seed in range(12)]
    assert sum(finding.read for finding in textless) <= 2 and inner.read <= 2
    assert all(finding.words == 0 for finding in textless if not finding.read)
    for seed in range(12):
        assert screened.detect(*rgb_and_grey(with_text(scene(seed)).resize((512, 512)))).read
    assert inner.read == 12 + sum(finding.read for finding in textless)


class BandRecorder:
    """Reports that text fills whatever it is given, and keeps what that was."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, pixels: np.ndarray, grey: np.ndarray) -> TextFinding:
        self.shapes.append(grey.shape)
        assert pixels.shape[:2] == grey.shape
        return TextFinding(words=3, area=1.0, sample="band")


def test_ocr_reads_the_band_around_the_lines_and_the_area_is_of_the_whole_picture() -> None:
    recorder = BandRecorder()
    # with_text writes a caption in a white box along the bottom of the picture.
    finding = ScreenedDetector(recorder).detect(*rgb_and_grey(with_text(scene(4)).resize((512, 512))))
    ((band_height, band_width),) = recorder.shapes
    assert band_height < 256 and band_width <= 512
    assert finding.area == pytest.approx(band_height * band_width / 512**2, abs=1e-4)
    assert finding.words == 3 and finding.read


def test_a_small_output_size_judges_blur_and_text_at_full_measuring_resolution(tmp_path: Path) -> None:
    config = AnalysisConfig(options=FilterOptions(size=64, min_side=64), max_pixels=10**8)
    detector = ScreenedDetector(TesseractDetector())
    with CleanPack(tmp_path) as pack:
        sharp = analyse_image("sharp", encoded(scene(1)), config, detector, pack)
        soft = analyse_image("soft", encoded(blurred(scene(1), 3.0)), config, detector, pack)
        marked = analyse_image("marked", encoded(with_text(scene(2))), config, detector, pack)

    assert sharp.blur is not None and sharp.blur <= DEFAULTS.blur_threshold
    assert soft.blur is not None and soft.blur > DEFAULTS.blur_threshold
    assert marked.text_words >= DEFAULTS.text_max_words or marked.text_area >= DEFAULTS.text_max_area
    assert marked.text_read and not sharp.text_read and not soft.text_read
    assert soft.clean_file is None and marked.clean_file is None  # dropped for their own sake: nothing encoded
    with Image.open(io.BytesIO(sharp.read_clean(tmp_path))) as clean:
        assert clean.size == (64, 64)
