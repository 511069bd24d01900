"""Sharpness and information content, measured on a fixed-size grey copy so scores compare across sizes."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MEASURE_SIDE = 512
# A step between neighbours below this many grey levels is shading, not an edge: flat colour, smooth
# gradients and skies are left out of the blur measure instead of reading as blurry.
EDGE_STEP = 4
REBLUR_SIDE = 9  # the box filter whose effect on the edges is measured


@dataclass(frozen=True)
class QualityScores:
    blur: float  # 0 (sharp) … 1 (blurry): the share of edge contrast that survives a re-blur
    std: float  # grey standard deviation: low means near-uniform
    entropy: float  # bits of the grey histogram: low means little information


def grey_copy(image: Image.Image, side: int = MEASURE_SIDE) -> np.ndarray:
    grey = image.convert("L")
    if grey.size != (side, side):
        grey = grey.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(grey)


def measure_quality(image: Image.Image) -> QualityScores:
    return measure_grey(grey_copy(image))


def blur_score(grey: np.ndarray) -> float:
    """How little of the edges' contrast a 9×9 box blur removes, in the blurrier direction (0 sharp … 1 blurry).

    After Crété-Roffet et al. (2007), "The blur effect": blurring a sharp picture again flattens its
    edges, blurring a blurry one changes little. Only steps of at least EDGE_STEP grey levels count,
    so flat colour, cel shading and smooth gradients neither dilute nor dominate the score, and the
    ratio makes it independent of contrast. A picture with no such step at all scores 1.
    """
    reblurred = cv2.blur(grey, (REBLUR_SIDE, REBLUR_SIDE))
    worst = 0.0
    for axis in (0, 1):
        steps = _neighbour_steps(grey, axis)
        _, steps = cv2.threshold(steps, EDGE_STEP - 1, 255, cv2.THRESH_TOZERO)  # shading out
        kept_steps = _neighbour_steps(reblurred, axis)
        lost = cv2.subtract(steps, kept_steps)  # saturates at 0; 0 wherever `steps` was shading
        total = float(cv2.sumElems(steps)[0])
        if total == 0:
            return 1.0
        worst = max(worst, 1 - float(cv2.sumElems(lost)[0]) / total)
    return worst


def _neighbour_steps(grey: np.ndarray, axis: int) -> np.ndarray:
    if axis == 0:
        return cv2.absdiff(grey[1:], grey[:-1])
    return cv2.absdiff(grey[:, 1:], grey[:, :-1])


def measure_grey(grey: np.ndarray) -> QualityScores:
    """Scores of a uint8 grey array (the measuring copy)."""
    _, grey_std = cv2.meanStdDev(grey)
    # The entropy's histogram from every other row and column: a 256-bin histogram of 65,536 pixels
    # is off by ~0.003 bits, and calcHist over all of them took a third of the measuring time.
    histogram = cv2.calcHist([grey[::2, ::2]], [0], None, [256], [0, 256]).ravel()
    probabilities = histogram[histogram > 0].astype(np.float64) / histogram.sum()
    entropy = float(-(probabilities * np.log2(probabilities)).sum())
    return QualityScores(blur=blur_score(grey), std=float(grey_std[0, 0]), entropy=entropy)
