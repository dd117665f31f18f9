"""What the network learned, and why it decided: pictures for TensorBoard, predict and the service.

- `weight_tiles`: each first-hidden-layer unit's 784 input weights as a 28x28 tile, red where a
  bright pixel pushes the unit up, blue where it pushes it down, white for zero: the strokes each
  unit of the input layer's first features looks for.
- `hidden_features`: the last hidden layer's activations, the features the output layer decides
  on, for TensorBoard's projector (`log_embedding`).
- `attributions`: for an image and a class, how much each pixel pushed the network toward that class
  (positive) or away from it (negative): Captum's Integrated Gradients against a black image. Its
  attributions add up to the class's logit minus the logit of the black image, so they split the
  decision exactly among the pixels.
- `explanation_figure`: one prediction as a picture: the input, its attribution map, the probabilities.
- `image_grid`, `labelled_grid`: digits as the network receives them, as one picture (with captions).
"""

import shutil
from pathlib import Path

import matplotlib
import torch
from captum.attr import IntegratedGradients
from google.protobuf import text_format
from matplotlib.figure import Figure
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from mnist_ann.data import NORMALIZED_RANGE, pixels
from mnist_ann.network import IMAGE_SIDE, MLP

DIVERGING = "RdBu_r"  # blue for negative, white for zero, red for positive
BLACK = NORMALIZED_RANGE[0]  # a black pixel, as the network receives it


def diverging_colours(values: Tensor, limit: float | Tensor) -> Tensor:
    """Values in [-limit, limit] as RGB (..., 3) floats in [0, 1]: blue, white at zero, red."""
    scaled = (values / (2 * limit) + 0.5).clamp(0, 1)
    return torch.from_numpy(matplotlib.colormaps[DIVERGING](scaled.numpy())[..., :3]).float()


def weight_tiles(network: MLP, columns: int = 16, units: int | None = None, zoom: int = 1) -> Tensor:
    """The first hidden layer's weights as an RGB picture (3, H, W): one 28x28 tile per unit (the first `units`
    of them), one scale for all, each pixel drawn `zoom` x `zoom`."""
    first = network.linear_layers()[0]
    weights = first.weight.detach()[:units].cpu()
    limit = weights.abs().quantile(0.995).clamp_min(1e-8)  # a few extreme weights would wash out the rest
    tiles = diverging_colours(weights.view(-1, IMAGE_SIDE, IMAGE_SIDE), limit).permute(0, 3, 1, 2)  # (units, 3, H, W)
    tiles = tiles.repeat_interleave(zoom, 2).repeat_interleave(zoom, 3)
    return make_grid(tiles, nrow=columns, padding=2, pad_value=0.5)


def hidden_features(network: MLP, images: Tensor) -> Tensor:
    """The last hidden layer's activations (N, width) for normalized images (N, 1, 28, 28)."""
    with torch.no_grad():
        outputs = network.layer_outputs(images)
    return outputs[-2] if len(outputs) > 1 else images.flatten(1)  # no hidden layer: the pixels themselves


def attributions(network: torch.nn.Module, images: Tensor, targets: Tensor, steps: int = 50) -> Tensor:
    """Integrated Gradients of each image's `targets` output (class id, or 0 for a single output)
    against a black image, per pixel: (N, 28, 28)."""
    # Lightning's predict loop and the service run under inference_mode, whose tensors cannot take part in
    # backpropagation: leave it, and work on a copy of the images made outside it.
    with torch.inference_mode(False), torch.enable_grad():
        images = images.clone()
        baseline = torch.full_like(images, BLACK)
        attributed = IntegratedGradients(network).attribute(images, baseline, target=targets, n_steps=steps)
    return attributed.detach().view(len(images), IMAGE_SIDE, IMAGE_SIDE)


def class_attributions(model, images: Tensor, classes: Tensor) -> Tensor:
    """`attributions` toward each image's class id, for any task: a multiclass model's output for that
    class; a binary model's one logit, signed by the class; a regression model's value (toward larger)."""
    if model.task.outputs > 1:
        return attributions(model.net, images, classes)
    toward = attributions(model.net, images, torch.zeros_like(classes))
    return toward * (2 * classes - 1).view(-1, 1, 1) if model.task.num_classes == 2 else toward


def attribution_grid(
    images: Tensor, true: Tensor, predicted: Tensor, toward_true: Tensor, toward_predicted: Tensor, names: list[str]
) -> Figure:
    """Misclassified digits, two to a row, each beside what pushed it toward its true and its predicted class.

    One composed picture with captions, not an axes per tile: drawing 24 axes took half a second.
    """
    limit = torch.cat([toward_true, toward_predicted]).abs().quantile(0.99).clamp_min(1e-8)
    digits = pixels(images[:, 0]).unsqueeze(-1).expand(-1, -1, -1, 3)
    tiles = torch.stack([digits, diverging_colours(toward_true, limit), diverging_colours(toward_predicted, limit)], 1)
    padding, columns = 12, 6  # two digits a row, three tiles each
    grid = make_grid(tiles.flatten(0, 1).permute(0, 3, 1, 2), nrow=columns, padding=padding, pad_value=1.0)
    rows = -(-len(tiles) * 3 // columns)
    # TensorBoard's image cards show a picture about 370 by 215 pixels: drawn at that size, the captions
    # stay readable there.
    figure = Figure(figsize=(3.8, 0.62 * rows + 0.3), dpi=100)
    axes = figure.subplots()
    axes.imshow(grid.permute(1, 2, 0).numpy())
    axes.set_axis_off()
    cell = IMAGE_SIDE + padding
    for index in range(len(images)):
        captions = (
            f"{names[true[index]]} as {names[predicted[index]]}",
            f"for {names[true[index]]}",
            f"for {names[predicted[index]]}",
        )
        for part, caption in enumerate(captions):
            row, column = divmod(3 * index + part, columns)
            axes.text(column * cell + padding + 14, row * cell + padding - 1, caption, fontsize=8, ha="center")
    axes.set_title("pixels for (red) and against (blue) the true and the predicted class", fontsize=7)
    figure.tight_layout(pad=0.2)
    return figure


def log_embedding(
    writer: SummaryWriter, features: Tensor, labels: list[str], images: Tensor, tag: str, step: int
) -> None:
    """An embedding for TensorBoard's projector, kept beside the ones already in the run's folder.

    `SummaryWriter.add_embedding` rewrites projector_config.pbtxt with only its own writer's
    embeddings, so a `test` logging into its training run would hide the training's: the config
    on disk is read first and merged. The same checkpoint tested again replaces its embedding of that step.
    """
    config_path = Path(writer.get_logdir()) / "projector_config.pbtxt"
    earlier = ProjectorConfig()
    if config_path.is_file():
        text_format.Parse(config_path.read_text(), earlier)
    for entry in earlier.embeddings:
        if entry.tensor_name == f"{tag}:{step:05d}":  # (as SummaryWriter names an embedding)
            shutil.rmtree(config_path.parent / Path(entry.tensor_path).parent, ignore_errors=True)
    writer.add_embedding(features, metadata=labels, label_img=pixels(images), tag=tag, global_step=step)
    written, merged, listed = ProjectorConfig(), ProjectorConfig(), set()
    text_format.Parse(config_path.read_text(), written)
    for entry in [*written.embeddings, *earlier.embeddings]:  # each folder once, the newest entry for it
        if entry.tensor_path not in listed:
            listed.add(entry.tensor_path)
            merged.embeddings.add().CopyFrom(entry)
    config_path.write_text(text_format.MessageToString(merged))


def explanation_figure(
    image: Tensor, attribution: Tensor, names: list[str], predicted: int, probabilities: list[float] | None = None
) -> Figure:
    """One prediction: the input as the network saw it (normalized, (1, 28, 28)), the pixels' pull toward
    the predicted class, and the probabilities (without them, for regression: the input and its map)."""
    figure = Figure(figsize=(8.4 if probabilities else 5.6, 2.9), dpi=100)
    panels = figure.subplots(
        1, 3 if probabilities else 2, gridspec_kw={"width_ratios": [1, 1, 1.4][: 3 if probabilities else 2]}
    )
    panels[0].imshow(image[0].numpy(), cmap="gray", vmin=BLACK, vmax=NORMALIZED_RANGE[1])
    panels[0].set_title("what the network sees", fontsize=10)
    limit = float(attribution.abs().max().clamp_min(1e-8))
    shown = panels[1].imshow(attribution.numpy(), cmap=DIVERGING, vmin=-limit, vmax=limit)
    panels[1].set_title(f"pixels for (red) / against (blue) {names[predicted]}", fontsize=10)
    figure.colorbar(shown, ax=panels[1], fraction=0.046, pad=0.04)
    for panel in panels[:2]:
        panel.set_axis_off()
    if probabilities:
        colours = ["#d9480f" if index == predicted else "#8a94a8" for index in range(len(probabilities))]
        panels[2].barh(range(len(probabilities)), probabilities, color=colours)
        panels[2].set_yticks(range(len(probabilities)), names, fontsize=9)
        panels[2].invert_yaxis()
        panels[2].set_xlim(0, 1)
        panels[2].set_title(f"{names[predicted]}: {probabilities[predicted]:.1%}", fontsize=10)
    figure.tight_layout()
    return figure


def image_grid(images: Tensor, columns: int = 8, padding: int = 2, pad_value: float = 0.0) -> Tensor:
    """Model inputs as one picture, with the normalization undone: black is 0, white is 1."""
    return make_grid(
        images, nrow=columns, padding=padding, normalize=True, value_range=NORMALIZED_RANGE, pad_value=pad_value
    )


def labelled_grid(images: Tensor, true: Tensor, predicted: Tensor, names: list[str], columns: int = 8) -> Figure:
    """One torchvision grid of the digits, with `true>predicted` written in the gap under each.

    Sized for TensorBoard's image cards, which show a figure about 320 pixels wide: a small figure
    with large captions, shrunk only where class names are long (Fashion-MNIST's clothes).
    """
    padding = 24  # grid pixels between digits: the caption goes in the gap under each
    cell = IMAGE_SIDE + padding
    grid = image_grid(images, columns, padding, pad_value=1.0)  # white paper under the captions
    rows = -(-len(images) // columns)
    captions = [
        f"{names[label]}>{names[guess]}" for label, guess in zip(true.tolist(), predicted.tolist(), strict=True)
    ]
    width = 5.0  # inches, at 100 dpi: 500 pixels
    cell_points = width * 72 / columns
    fontsize = min(15.0, cell_points / (0.62 * max(map(len, captions))))
    figure = Figure(figsize=(width, width * rows / columns + 0.35), dpi=100)
    axes = figure.subplots()
    axes.imshow(grid.permute(1, 2, 0).numpy())
    axes.set_axis_off()
    for index, caption in enumerate(captions):
        row, column = divmod(index, columns)
        x, y = column * cell + padding + IMAGE_SIDE // 2, row * cell + padding + IMAGE_SIDE
        axes.text(x, y, caption, color="darkred", fontsize=fontsize, ha="center", va="top")
    axes.set_title("misclassified (true>predicted)", fontsize=15)
    figure.tight_layout(pad=0.2)
    return figure
