"""The artificial neural network itself: a plain PyTorch multilayer perceptron.

Input layer: the 28x28 image flattened to 784 pixel features. Hidden layers: fully connected
layers with ReLU, each extracting features from the one before; optionally dropout after each, which
zeroes a random share of the features while training so that no unit can rely on another (Srivastava
et al. 2014), and does nothing at evaluation; optionally a max-norm limit on each hidden unit's incoming
weights (the same paper), which lets dropout train at high learning rates; optionally batch normalization
between each hidden layer's linear map and its ReLU (Ioffe and Szegedy 2015): each feature standardized over
the batch while training, by the running mean and variance it kept at evaluation. Output layer: one neuron per
class, returning raw scores (logits); softmax is applied by the loss and at prediction time,
never here, because cross-entropy on logits is numerically safer than on probabilities.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

IMAGE_SIDE = 28  # MNIST's images: 28x28 pixels
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
NUM_CLASSES = 10
DIGITS = [str(digit) for digit in range(NUM_CLASSES)]  # the classes' names, unless the data names them


class MLP(nn.Module):
    """784 -> Linear(784, h1) -> ReLU -> Linear(h1, h2) -> ReLU -> ... -> Linear(hn, outputs).

    Any number of hidden layers, none included (then it is a linear model of the pixels). With
    `dropout`, a Dropout follows each hidden ReLU; with `input_dropout`, one follows the input pixels; with
    `batch_norm`, a BatchNorm1d comes between each hidden Linear and its ReLU.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (128, 64),
        in_features: int = IMAGE_PIXELS,
        num_classes: int = NUM_CLASSES,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout:
            layers.append(nn.Dropout(input_dropout))
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), *([nn.BatchNorm1d(size)] if batch_norm else []), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """Map a batch of images (N, 1, 28, 28) or flat vectors (N, 784) to logits (N, num_classes)."""
        return self.layers(images)

    def linear_layers(self) -> list[nn.Linear]:
        """The fully connected layers, from the first hidden layer's to the output layer's."""
        return [layer for layer in self.layers if isinstance(layer, nn.Linear)]

    @torch.no_grad()
    def limit_incoming_norms(self, max_norm: float) -> None:
        """Max-norm: each hidden unit's incoming weights (a row of its layer's weight matrix) scaled back to length
        `max_norm` where they are longer. Applied after every optimizer step, it bounds the weights however large
        the steps, instead of pulling all of them toward 0 as weight decay does."""
        for layer in self.linear_layers()[:-1]:
            layer.weight.renorm_(2, 0, max_norm)

    def layer_outputs(self, images: Tensor) -> list[Tensor]:
        """The same forward pass, one layer at a time: each hidden layer's activations (after its ReLU),
        then the output layer's logits. What the network "sees" at every stage, for pictures of it."""
        outputs, x = [], images
        for layer in self.layers:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                outputs.append(x)
        return [*outputs, x]
