"""mnist-ann: the classic three-layer artificial neural network for MNIST digits, with PyTorch Lightning.

    mnist_ann.network   MLP, the network as a plain nn.Module
    mnist_ann.model     MNISTClassifier, the LightningModule
    mnist_ann.data      MNISTDataModule, the LightningDataModule
    mnist_ann.cli       MNISTCLI, the command line

Nothing is imported here, so that `python -m mnist_ann` controls how its start-up is paid for.
"""
