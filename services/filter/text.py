"""Text, watermark and logo detection behind a small interface, so a detector model can replace OCR."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image

MIN_WORD_CONFIDENCE = 60.0


@dataclass(frozen=True)
class TextFinding:
    words: int  # confidently recognised words
    area: float  # fraction of the image covered by their boxes
    sample: str  # a few of the words, for the report


class TextDetector(Protocol):
    def detect(self, image: Image.Image) -> TextFinding: ...


class NoTextDetector:
    """Used when text detection is switched off."""

    def detect(self, image: Image.Image) -> TextFinding:
        del image
        return TextFinding(words=0, area=0.0, sample="")


class TesseractDetector:
    """Tesseract OCR on a downscaled grey copy; counts words it is confident about.

    Noise and texture make Tesseract emit junk "words": only boxes with confidence ≥ 60 and at
    least two letters/digits count.
    """

    def __init__(self, max_side: int = 512, command: str = "tesseract") -> None:
        import pytesseract

        self.pytesseract = pytesseract
        self.max_side = max_side
        pytesseract.pytesseract.tesseract_cmd = command

    def detect(self, image: Image.Image) -> TextFinding:
        grey = image.convert("L")
        grey.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
        # psm 4 (one column of lines) found banners over busy scenes that modes 3, 6 and 11 missed.
        data = self.pytesseract.image_to_data(grey, config="--psm 4 --oem 1", output_type=self.pytesseract.Output.DICT)
        words, covered = [], 0
        for text, confidence, width, height in zip(
            data["text"], data["conf"], data["width"], data["height"], strict=True
        ):
            alphanumerics = sum(character.isalnum() for character in text)
            if float(confidence) >= MIN_WORD_CONFIDENCE and alphanumerics >= 2:
                words.append(text)
                covered += int(width) * int(height)
        area = covered / (grey.width * grey.height)
        return TextFinding(words=len(words), area=round(area, 4), sample=" ".join(words[:8]))


def make_text_detector(kind: str, max_side: int, command: str) -> TextDetector:
    if kind == "none":
        return NoTextDetector()
    if kind == "tesseract":
        return TesseractDetector(max_side, command)
    raise ValueError(f"unknown text detector {kind!r}")
