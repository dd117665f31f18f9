"""mnist-ann: the classic three-layer artificial neural network for MNIST digits, with PyTorch Lightning.

    mnist_ann.network      MLP, the network as a plain nn.Module
    mnist_ann.tasks        the output layer by problem type: multiclass, binary, regression
    mnist_ann.model        MNISTClassifier, the LightningModule
    mnist_ann.data         MNISTDataModule, the LightningDataModule (MNIST, Fashion-MNIST, IDX folders)
    mnist_ann.monitoring   TensorBoardMonitor, images and HParams for TensorBoard
    mnist_ann.images       users' pictures of digits, prepared the way MNIST digits were
    mnist_ann.predictions  PredictionWriter, predict's rows on the console, in CSV or JSON Lines
    mnist_ann.export       torch.export and ONNX files for deployment
    mnist_ann.cli          MNISTCLI, the command line
    mnist_ann.errors       the errors a user can fix, printed as one message

Nothing is imported here, so that `python -m mnist_ann` controls how its start-up is paid for.
"""
