"""The filter's decisions on real photographs and paintings with known truth (tests/filter/real_corpus.py)."""

from __future__ import annotations

import pytest

from services.common.storage import sha256_hex
from services.filter.analysis import AnalysisConfig
from services.filter.params import FilterOptions
from services.filter.run import FilterInput, FilterOutcome, filter_images
from tests.filter import real_corpus
from tests.filter.real_corpus import CorpusFile, Scores


@pytest.fixture(scope="module")
def corpus() -> list[CorpusFile]:
    return real_corpus.build()


@pytest.fixture(scope="module")
def outcome(corpus: list[CorpusFile], tmp_path_factory: pytest.TempPathFactory) -> FilterOutcome:
    inputs = [FilterInput(sha256_hex(file.data), lambda data=file.data: data, {"source": file.name}) for file in corpus]
    config = AnalysisConfig(FilterOptions(), max_pixels=100_000_000)
    return filter_images(inputs, config, tmp_path_factory.mktemp("work"), workers=2)


@pytest.fixture(scope="module")
def scores(outcome: FilterOutcome, corpus: list[CorpusFile]) -> Scores:
    found = real_corpus.score(outcome.entries, corpus)
    print(found.table())  # shown with -s, and beside any failure
    return found


def test_the_corpus_has_every_kind_of_case(corpus: list[CorpusFile]) -> None:
    kinds = {file.kind for file in corpus}
    assert set(real_corpus.COPY_KINDS) <= kinds
    assert {"lookalike", "flat", "uniform"} <= kinds
    assert {file.text for file in corpus if file.text} == set(real_corpus.TEXT_KINDS)
    assert sum(file.text is not None for file in corpus) == 15
    assert len(corpus) >= 140
    assert real_corpus.build() == corpus  # the same bytes every time


def test_every_input_file_has_exactly_one_entry(outcome: FilterOutcome, scores: Scores) -> None:
    assert scores.entries_per_file
    repeated = next(entry for entry in outcome.entries if entry["source"] == "astronaut-copy.jpg")
    assert repeated["reason"] == "exact_duplicate"
    assert "astronaut.jpg" in repeated["detail"]


def test_near_duplicates_are_found_through_frames_crops_turns_and_mirroring(scores: Scores) -> None:
    assert scores.pair_recall >= 0.95
    assert scores.pair_precision >= 0.99
    for kind in ("border", "crop", "rotate", "mirror"):
        assert scores.copy_recall[kind] >= 8 / 9, kind


def test_the_original_is_kept_and_exact_copies_are_named_exact(scores: Scores) -> None:
    assert scores.keeper_misses == []
    assert scores.exact_misses == []


def test_overlay_text_of_every_kind_is_found_and_textless_pictures_are_not_flagged(scores: Scores) -> None:
    assert scores.text_found >= 14, f"{scores.text_found} of {scores.text_total}"
    assert scores.text_false == []


def test_blur_is_caught_and_flat_art_is_neither_blurry_nor_uniform(scores: Scores) -> None:
    assert scores.blur_found == scores.blur_total
    assert scores.blur_false == []
    assert scores.uniform_found == scores.uniform_total
    assert scores.uniform_false == []


def test_the_report_says_why_for_every_drop(outcome: FilterOutcome) -> None:
    for entry in outcome.entries:
        assert entry["status"] in ("kept", "dropped")
        if entry["status"] == "dropped":
            assert entry["reason"] != "kept" and entry["detail"]
    assert "near_duplicate" in outcome.html and "text" in outcome.html
