"""MNIST as a LightningDataModule: files on disk in, normalized batches out.

The whole data set is small (60,000 + 10,000 images of 28x28 bytes), so `setup` normalizes it once
into float tensors kept on the training device, and the loaders serve slices of them
(`mnist_ann.loader`): a step of this model costs about a millisecond, less than the per-image work
of a torchvision dataset behind a DataLoader.
"""

import os
from dataclasses import asdict

import lightning as L
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch import Tensor
from torchvision.transforms.v2 import functional as F

from mnist_ann.augment import NO_DISTORTION, Distortion
from mnist_ann.errors import ConfigError
from mnist_ann.idx import class_names, ensure_files, load_split, resolve_data_dir
from mnist_ann.images import load_pictures
from mnist_ann.loader import EpochBatchSampler, TensorLoader

MEAN, STD = 0.5, 0.5
NORMALIZED_RANGE = ((0 - MEAN) / STD, (1 - MEAN) / STD)  # where black and white pixels end up


def normalize(images: Tensor) -> Tensor:
    """uint8 images (N, 28, 28) -> float32 (N, 1, 28, 28): scaled to [0, 1], then (x - 0.5) / 0.5."""
    scaled = F.to_dtype(images.unsqueeze(1), torch.float32, scale=True)
    return F.normalize(scaled, mean=[MEAN], std=[STD])


def pixels(images: Tensor) -> Tensor:
    """Normalized images back to pixels in [0, 1], black 0 and white 1: for pictures of them."""
    return (images * STD + MEAN).clamp(0, 1)


class MNISTDataModule(L.LightningDataModule):
    """MNIST: 60,000 training images (minus a fixed validation split) and the 10,000 test images.

    Args:
        data_dir: folder holding `MNIST/raw/` (torchvision's layout); when unset, ${MNIST_ANN_DATA_DIR}, else `data`.
        batch_size: images per training batch: one optimizer step each.
        eval_batch_size: images per validation, test and predict batch. It changes no result, only
            speed: a few large batches evaluate much faster than many small ones.
        val_size: images carved out of the training set for validation, the same ones on every run; 0 for none.
        split_seed: seed of that carve-out.
        download: fetch the files with torchvision when they are missing.
        dataset: `mnist`, `fashion-mnist` (both downloadable into `data_dir`), or a folder holding the
            four IDX files in MNIST's format, gzipped or not, such as `/usr/share/datasets/fashion-mnist`.
        classes: the name of each label 0-9, for predictions and monitoring; unset, the dataset's own
            (digits, or Fashion-MNIST's clothes).
        predict_files: an image file or folder, or a list of them, for `predict` (prepared MNIST-style
            by `mnist_ann.images`); unset, `predict` runs on the test images.
        augmentation: how far each training batch's images are randomly distorted on the training
            device (`mnist_ann.augment`); by default not at all. Validation, test and predict images never are.
        extra_data: a folder of IDX files (such as a collection of your own drawings, `mnist_ann.collect`)
            whose training images are added to the training set; validation and test stay the dataset's.
        extra_repeats: how many times each of those images is in every epoch, so that a few dozen count
            beside tens of thousands.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        batch_size: PositiveInt = 64,
        eval_batch_size: PositiveInt = 1000,
        val_size: NonNegativeInt = 5_000,
        split_seed: int = 12345,
        download: bool = True,
        dataset: str = "mnist",
        classes: list[str] | None = None,
        predict_files: list[str] | str | None = None,
        augmentation: Distortion = NO_DISTORTION,
        extra_data: str | None = None,
        extra_repeats: PositiveInt = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore="data_dir")
        self.data_dir = resolve_data_dir(data_dir)
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ConfigError(f"data.data_dir {self.data_dir} is a file; it must be a folder (holding MNIST/raw/)")
        # The folder actually used (after the environment fallback), and the augmentation, as plain values so that
        # checkpoints stay weights_only-loadable.
        self.hparams["data_dir"] = str(self.data_dir)
        if isinstance(augmentation, dict):  # from a checkpoint's hyperparameters (`load_from_checkpoint`)
            augmentation = Distortion(**augmentation)
        self.hparams["augmentation"] = {name: float(value) for name, value in asdict(augmentation).items()}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.download, self.dataset = val_size, split_seed, download, dataset
        self.predict_files = [predict_files] if isinstance(predict_files, str) else predict_files
        self.classes = list(classes) if classes else class_names(dataset)
        self.test_name = "test"  # what test results are logged as (the command line names a collection's)
        if len(self.classes) != 10:
            raise ConfigError(f"data.classes must name the 10 labels 0-9, got {len(self.classes)} names")
        self.augmentation = augmentation
        self.extra_data, self.extra_repeats = extra_data, extra_repeats
        self.augmentation_seed: tuple[int, int] | None = None  # (the run's seed, this process), set by setup("fit")
        self.augmented_batches = 0  # kept in checkpoints: with the seed, it decides the next batch's distortions
        self.train_loader: TensorLoader | None = None
        self.restored_train_position: dict[str, int] | None = None
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        # For `predict`: a name per item (its file), and one message per file that could not be used.
        self.predict_names: list[str] = []
        self.predict_failures: list[str] = []

    def _predicting_files(self, stage: str | None = None) -> bool:
        predicting = stage == "predict" or (self.trainer is not None and self.trainer.predicting)
        return predicting and bool(self.predict_files)

    def prepare_data(self) -> None:
        if not self._predicting_files():
            ensure_files(self.data_dir, self.download, self.dataset)

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        if self._predicting_files(stage):
            digits, self.predict_names, self.predict_failures = load_pictures(self.predict_files)
            self.splits["predict"] = normalize(digits).to(device), torch.arange(len(digits), device=device)
        elif not self.splits:
            self._load_splits(device, stage)
        if stage == "fit" and self.augmentation:
            self.augmentation_seed = torch.initial_seed(), self.trainer.global_rank if self.trainer else 0

    def _load_splits(self, device: torch.device, stage: str) -> None:
        ensure_files(self.data_dir, download=False, dataset=self.dataset)
        images, labels = load_split(self.data_dir, train=True, dataset=self.dataset)
        val_size = self.val_size
        if val_size >= len(images):
            if stage in ("fit", "validate"):
                raise ConfigError(f"data.val_size={val_size} leaves no training images out of {len(images)}")
            val_size = 0  # testing a small data set (a collection of drawings): no validation split is needed
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.split_seed))
        val_index, train_index = order[:val_size], order[val_size:]
        images = normalize(images)
        test_images, test_labels = load_split(self.data_dir, train=False, dataset=self.dataset)
        test_images = normalize(test_images)
        train = images[train_index], labels[train_index]
        if self.extra_data:
            extra_images, extra_labels = load_split(self.data_dir, train=True, dataset=self.extra_data)
            train = (
                torch.cat([train[0], normalize(extra_images).repeat(self.extra_repeats, 1, 1, 1)]),
                torch.cat([train[1], extra_labels.repeat(self.extra_repeats)]),
            )
        self.splits = {
            "train": train,
            "val": (images[val_index], labels[val_index]),
            "test": (test_images, test_labels),
            # Predicting on the test images: the second item of each batch is the image's index, not its label.
            "predict": (test_images, torch.arange(len(test_labels))),
        }
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in self.splits.items()}
        self.predict_names = [f"test image {index}" for index in range(len(test_labels))]

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        if self.augmentation_seed is None or not self.trainer.training or not isinstance(batch, (tuple, list)):
            return batch  # (a lone tensor: the model summary's example image, not a training batch)
        images, labels = batch
        # The distortions of batch N of a run come from (seed, process, N) alone: a resumed run needs only the
        # count, which is the same in every process, and each process of a DDP run draws its own.
        seed = hash((*self.augmentation_seed, self.augmented_batches)) % 2**63  # (int tuples hash alike everywhere)
        self.augmented_batches += 1
        generator = torch.Generator(images.device).manual_seed(seed)
        return self.augmentation(images, NORMALIZED_RANGE[0], generator), labels

    def state_dict(self) -> dict:
        """What a resumed run needs beyond Lightning's own state: the number of batches distorted so far, and
        the position in the training epoch. Lightning keeps that position too, but does not restore it when the
        model asked for `trainer.estimated_stepping_batches` first, as a schedule does (Lightning issue 20550)."""
        state = {"train_position": self.train_loader.state_dict()} if self.train_loader else {}
        return {**state, "augmented_batches": self.augmented_batches}

    def load_state_dict(self, state: dict) -> None:
        self.augmented_batches = state.get("augmented_batches", 0)
        self.restored_train_position = state.get("train_position")

    def _loader(self, split: str, batch_size: int, training: bool = False) -> TensorLoader:
        images, labels = self.splits[split]
        trainer = self.trainer
        sampler = EpochBatchSampler(
            len(images),
            batch_size,
            shuffle=training,
            seed=torch.initial_seed(),  # the run's seed, as set by seed_everything
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            equal_shards=training,
            device=images.device,
        )
        return TensorLoader(images, labels, sampler)

    def train_dataloader(self) -> TensorLoader:
        self.train_loader = self._loader("train", self.batch_size, training=True)
        if self.restored_train_position:
            self.train_loader.load_state_dict(self.restored_train_position)
            self.restored_train_position = None
        return self.train_loader

    def val_dataloader(self) -> TensorLoader | list:
        return self._loader("val", self.eval_batch_size) if self.val_size else []

    def test_dataloader(self) -> TensorLoader:
        return self._loader("test", self.eval_batch_size)

    def predict_dataloader(self) -> TensorLoader:
        return self._loader("predict", self.eval_batch_size)
