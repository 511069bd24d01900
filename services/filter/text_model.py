"""A learned text detector: PP-OCRv4's DB text-detection model (from the rapidocr_onnxruntime wheel) on onnxruntime.

The model maps a picture to a per-pixel probability of lying inside a (shrunk) text line; we threshold the
map, take its connected regions and keep the ones shaped like a line of text. It finds overlay text that
OCR misses (outlined subtitles over busy photographs, semi-transparent watermarks, small corner addresses)
because it never has to read the letters.
"""

from __future__ import annotations

import importlib.util
import os

import cv2
import numpy as np

from services.filter.text import TextFinding

MODEL_PACKAGE = "rapidocr_onnxruntime"
MODEL_FILE = os.path.join("models", "ch_PP-OCRv4_det_infer.onnx")
INSTALL_HINT = "pip install --no-deps rapidocr_onnxruntime==1.4.4"

# Measured on tests/filter/real_corpus.py (512² pictures, one core): at 320 (22–24 ms) the model finds every
# overlay text but a 14 px light-grey address over gravel, which first shows at 832–896 (~240 ms, ten times
# the cost); at 896 a big semi-transparent "SAMPLE" falls apart into letters. More sides can be given: each
# is tried in turn until one finds text.
DEFAULT_SIDES = (320,)
PIXEL_THRESHOLD = 0.3  # the model's own binarisation threshold
MIN_SCORE = 0.8  # mean probability inside a region; text lines score 0.86–1.0
MIN_ASPECT = 5.0  # long / short side; flag stars, eyes and blobs stay under 4, words of 4+ letters over 5
MIN_LENGTH = 56  # pixels of the given picture: a name tag or sign in the scene (≤ 52 px at 512²) is not an overlay
UNCLIP_RATIO = 1.5  # DB predicts lines shrunk by area × ratio / perimeter; grown back for the covered area


def find_detection_model() -> str:
    """The path of the DB text-detection model inside the installed rapidocr_onnxruntime wheel.

    Found without importing the package: its __init__ needs opencv-python, shapely and pyclipper,
    which are not installed (the wheel is installed with --no-deps for its model files only).
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = os.path.join(folder, MODEL_FILE)
        if os.path.isfile(path):
            return path
    raise RuntimeError(
        f"The text-detection model {MODEL_FILE} was not found ({MODEL_PACKAGE} is "
        f"{'installed at ' + ', '.join(folders) if folders else 'not installed'}): run `{INSTALL_HINT}`, "
        "or pass the path of ch_PP-OCRv4_det_infer.onnx as the detector's model path"
    )


class DbTextDetector:
    """PP-OCRv4 DB text detection; a picture has text when `words` ≥ 1 (see `TextFinding`).

    The picture is fitted so its longer side is each of `sides` in turn (rounded to multiples of 32, as
    the model needs), until one finds text. Thresholds are in pixels of the picture given to `detect`, so
    they mean the same at any side. One onnxruntime session per detector, on one thread: the filter runs
    one worker process per core.
    """

    def __init__(
        self,
        model_path: str | None = None,
        sides: tuple[int, ...] = DEFAULT_SIDES,
        min_score: float = MIN_SCORE,
        min_aspect: float = MIN_ASPECT,
        min_length: float = MIN_LENGTH,
    ) -> None:
        import onnxruntime

        if not sides or min(sides) < 32:
            raise ValueError(f"sides must be at least 32 pixels, not {sides}")
        self.sides = sides
        self.min_score = min_score
        self.min_aspect = min_aspect
        self.min_length = min_length
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.session = onnxruntime.InferenceSession(
            model_path or find_detection_model(), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, pixels: np.ndarray, side: int) -> np.ndarray:
        """The model's text probability map for RGB pixels fitted to `side` (height × width float32)."""
        height, width = pixels.shape[:2]
        scale = side / max(height, width)
        fitted_width, fitted_height = (max(32, round(length * scale / 32) * 32) for length in (width, height))
        shrinking = fitted_width * fitted_height < width * height
        fitted = cv2.resize(
            pixels, (fitted_width, fitted_height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )
        # The model's normalisation: (x / 255 − 0.5) / 0.5, channels first.
        batch = (fitted.astype(np.float32) * (2 / 255) - 1).transpose(2, 0, 1)[np.newaxis]
        return self.session.run(None, {self.input_name: batch})[0][0, 0]

    def detect(self, pixels: np.ndarray, grey: np.ndarray) -> TextFinding:
        del grey  # the model reads colour
        pixels = np.ascontiguousarray(pixels)
        for side in self.sides:
            finding = self.detect_at(pixels, side)
            if finding.words:
                return finding
        return finding

    def detect_at(self, pixels: np.ndarray, side: int) -> TextFinding:
        """Text lines the model finds in RGB pixels fitted to `side`."""
        height, width = pixels.shape[:2]
        probability = self.probabilities(pixels, side)
        # Map pixels to picture pixels, per axis (the fitted sides were rounded to multiples of 32).
        to_picture = np.array([width / probability.shape[1], height / probability.shape[0]], dtype=np.float32)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            (probability > PIXEL_THRESHOLD).astype(np.uint8), 8, cv2.CV_32S
        )
        scores, covered = [], 0.0
        for label in range(1, count):
            left, top, box_width, box_height, _ = stats[label]
            inside = labels[top : top + box_height, left : left + box_width] == label
            score = float(probability[top : top + box_height, left : left + box_width][inside].mean())
            if score < self.min_score:
                continue
            rows, columns = np.nonzero(inside)
            points = np.column_stack([columns + left, rows + top]).astype(np.float32) * to_picture
            # The rotated rectangle, so turned watermarks are as long and thin as level ones.
            _, (side_a, side_b), _ = cv2.minAreaRect(points)
            short, long = min(side_a, side_b) + to_picture.min(), max(side_a, side_b) + to_picture.min()
            if long < self.min_length or long / short < self.min_aspect:
                continue
            scores.append(score)
            grow = short * long * UNCLIP_RATIO / (2 * (short + long))
            covered += (short + 2 * grow) * (long + 2 * grow)
        if not scores:
            return TextFinding(words=0, area=0.0, sample="")
        area = min(1.0, float(covered) / (width * height))
        sample = f"{len(scores)} text box{'es' if len(scores) > 1 else ''}, score {np.mean(scores):.2f}"
        return TextFinding(words=len(scores), area=round(area, 4), sample=sample)
