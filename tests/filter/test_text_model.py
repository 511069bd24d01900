"""The DB text-detection model on the real-picture corpus, seen as the filter sees it (512² centre crops)."""

from __future__ import annotations

import importlib.util
import re

import cv2
import numpy as np
import pytest

from services.filter.imaging import decode, normalise_pixels
from services.filter.quality import MEASURE_SIDE
from services.filter.text_model import INSTALL_HINT, DbTextDetector, find_detection_model
from tests.filter.real_corpus import CorpusFile, build


@pytest.fixture(scope="module")
def detector() -> DbTextDetector:
    # A dev dependency: missing, the tests fail (not skip) with find_detection_model's install hint.
    return DbTextDetector()


def measured(file: CorpusFile) -> tuple[np.ndarray, np.ndarray]:
    """The file's pixels as the filter measures them: a 512² centre crop, and its grey copy."""
    decoded = decode(file.data, 100_000_000, (255, 255, 255), shrink_to=MEASURE_SIDE)
    pixels = normalise_pixels(decoded.pixels, MEASURE_SIDE, "center-crop", (255, 255, 255))
    return pixels, cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def test_model_is_found() -> None:
    assert find_detection_model().endswith("ch_PP-OCRv4_det_infer.onnx")


def test_missing_model_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=re.escape(INSTALL_HINT)):
        find_detection_model()


def test_finds_overlay_text_and_nothing_in_textless_pictures(detector: DbTextDetector) -> None:
    files = build()
    with_text = [file for file in files if file.text is not None]
    textless = [file for file in files if file.text is None and not file.overlay and not file.uniform]
    missed = [file.name for file in with_text if detector.detect(*measured(file)).words == 0]
    flagged = {file.name: finding.sample for file in textless if (finding := detector.detect(*measured(file))).words}
    # One text file may be missed: gravel-corner_url's 14 px light-grey address shows only at 832 px and more.
    assert len(with_text) == 15 and len(missed) <= 1, f"missed {missed}"
    assert not flagged, f"textless pictures flagged: {flagged}"


def test_finding_describes_the_boxes(detector: DbTextDetector) -> None:
    subtitled = next(file for file in build() if file.text == "subtitle")
    finding = detector.detect(*measured(subtitled))
    assert finding.read and finding.words >= 1
    assert 0.005 < finding.area < 0.2  # one line across the picture, not the whole picture
    assert "text box" in finding.sample and "score" in finding.sample


def test_blank_picture_has_no_text(detector: DbTextDetector) -> None:
    blank = np.full((512, 384, 3), 200, dtype=np.uint8)
    finding = detector.detect(blank, blank[..., 0])
    assert (finding.words, finding.area, finding.read) == (0, 0.0, True)
