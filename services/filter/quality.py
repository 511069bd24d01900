"""Sharpness and information content, measured on a fixed-size grey copy so scores compare across sizes."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MEASURE_SIDE = 512


@dataclass(frozen=True)
class QualityScores:
    blur: float  # variance of the Laplacian: low means few edges, i.e. blurry
    std: float  # grey standard deviation: low means near-uniform
    entropy: float  # bits of the grey histogram: low means little information


def grey_copy(image: Image.Image, side: int = MEASURE_SIDE) -> np.ndarray:
    grey = image.convert("L")
    if grey.size != (side, side):
        grey = grey.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(grey)


def measure_quality(image: Image.Image) -> QualityScores:
    grey = grey_copy(image)
    blur = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    histogram = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    probabilities = histogram[histogram > 0] / grey.size
    entropy = float(-(probabilities * np.log2(probabilities)).sum())
    return QualityScores(blur=blur, std=float(grey.std()), entropy=entropy)
