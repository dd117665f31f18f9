"""mnist-ann: the classic three-layer artificial neural network for MNIST digits, with PyTorch Lightning.

The lesson, in the order to read it:
    mnist_ann.network      MLP, the network as a plain nn.Module
    mnist_ann.tasks        the output layer by problem type: multiclass, binary, regression
    mnist_ann.model        MNISTClassifier, the LightningModule: forward, loss, metrics, optimizer
    mnist_ann.data         MNISTDataModule, the LightningDataModule: files in, normalized batches out

What runs it:
    mnist_ann.__main__     the command table: fit, validate, test, predict, export, serve, tune
    mnist_ann.cli          MNISTCLI, LightningCLI with the recipe (mnist_ann/configs/) as its default
    mnist_ann.checkpoints  --ckpt_path best/last across runs, safe loading, atomic writes
    mnist_ann.stopping     StopTogether: a multi-process fit stops on a signal at one step, everywhere
    mnist_ann.monitoring   TensorBoardMonitor, images and HParams rows for TensorBoard
    mnist_ann.predictions  PredictionWriter, predict's rows on the console, in CSV or JSON Lines
    mnist_ann.explain      what the network learned: weight tiles, the projector, attributions
    mnist_ann.export       torch.export and ONNX files for deployment

Features around it, each a subpackage a learner can skip:
    mnist_ann.serve        the prediction service (LitServe) and the draw-a-digit page
    mnist_ann.tune         the Optuna search over the same configs

Underneath:
    mnist_ann.idx          the MNIST-format files: finding, downloading, reading, checksums
    mnist_ann.loader       batches cut from in-memory tensors, resumable mid-epoch
    mnist_ann.images       users' pictures of digits, prepared the way MNIST digits were
    mnist_ann.lean         what keeps Lightning's per-step cost small (no change to what is computed)
    mnist_ann.errors       the errors a user can fix, printed as one message

Nothing is imported here, so that `python -m mnist_ann` controls how its start-up is paid for.
"""
