"""mnist-ann: the classic three-layer artificial neural network for MNIST digits, with PyTorch Lightning."""

from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier
from mnist_ann.network import MLP

__all__ = ["MLP", "MNISTClassifier", "MNISTDataModule"]
