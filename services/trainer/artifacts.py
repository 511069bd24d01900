"""Picture-like training artifacts: the validation grid and the loss curve (JSON + PNG)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def image_grid(rows: list[list[Image.Image]]) -> Image.Image:
    """One row per prompt, one column per seed."""
    width, height = rows[0][0].size
    grid = Image.new("RGB", (width * max(len(row) for row in rows), height * len(rows)), "white")
    for row_index, row in enumerate(rows):
        for column, image in enumerate(row):
            grid.paste(image, (column * width, row_index * height))
    return grid


def write_loss_curve(curve: list[dict[str, float]], json_path: Path, png_path: Path) -> None:
    """`[{"step", "loss", "lr"}]` as JSON, and a PNG plot of loss (raw and smoothed) against step."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    json_path.write_text(json.dumps(curve))
    steps = [point["step"] for point in curve]
    losses = [point["loss"] for point in curve]
    smoothed, running = [], None
    for loss in losses:
        running = loss if running is None else 0.9 * running + 0.1 * loss
        smoothed.append(running)
    figure, axes = plt.subplots(figsize=(7, 3.5), dpi=100)
    axes.plot(steps, losses, color="#9bb", linewidth=0.8, label="loss")
    axes.plot(steps, smoothed, color="#c33", linewidth=1.5, label="smoothed (EMA 0.9)")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(png_path)
    plt.close(figure)
