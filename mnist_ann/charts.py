"""The charts of an evaluation, as matplotlib figures for TensorBoard: the confusion matrix, and each class's
accuracy."""

import numpy as np
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure
from torch import Tensor


def tick_rotation(names: list[str]) -> int:
    """Class names wider than two characters (Fashion-MNIST's, binary's "not 0") slanted, so they do not overlap."""
    return 45 if max(map(len, names)) > 2 else 0


def confusion_figure(matrix: Tensor, names: list[str]) -> Figure:
    """A confusion matrix with its counts and a colour bar: a row per true class, a column per prediction.
    The colours follow a log scale, so that a handful of mistakes shows beside hundreds of right answers."""
    figure = Figure(figsize=(5.6, 4.6), dpi=100)
    axes = figure.subplots()
    counts = matrix.numpy()
    most = max(counts.max().item(), 10)
    scale = SymLogNorm(linthresh=1, vmin=0, vmax=most)
    image = axes.imshow(counts, cmap="Blues", norm=scale)
    ticks = [0, *(10**power for power in range(len(str(most))))]
    figure.colorbar(image, ax=axes, label="images", ticks=ticks, format="%d")
    dark = scale(counts) > 0.6
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if dark[row, column] else "black"
        axes.text(column, row, count, ha="center", va="center", fontsize=7 if len(names) > 2 else 12, color=colour)
    axes.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true")
    axes.set_xticklabels(names, rotation=tick_rotation(names), ha="right")
    axes.set_yticklabels(names)
    figure.tight_layout()
    return figure


def accuracy_bars(matrix: Tensor, names: list[str]) -> Figure:
    """Each class's share of its test images predicted right, as labelled bars (from the confusion matrix)."""
    right = 100 * matrix.diagonal() / matrix.sum(1).clamp_min(1)
    figure = Figure(figsize=(5.6, 3.0), dpi=100)
    axes = figure.subplots()
    bars = axes.bar(names, right.numpy(), color="tab:blue")
    axes.bar_label(bars, fmt="%.1f", fontsize=8)
    bottom = max(0.0, 5 * (right.min().item() // 5) - 5)  # from 0, bars of 97% and 99% would look alike
    axes.set(ylim=(bottom, 100.5), ylabel=f"% right (axis from {bottom:.0f})", title="test accuracy per class")
    axes.tick_params(axis="x", labelrotation=tick_rotation(names))
    figure.tight_layout()
    return figure
