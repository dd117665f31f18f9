"""The command line: LightningCLI with fit, validate, test and predict, configured from YAML files."""

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier

CHECKPOINT_ALIASES = ("best", "last")


class CheckpointNotFoundError(FileNotFoundError):
    """`--ckpt_path best|last` found no such checkpoint from an earlier run."""


class MNISTCLI(LightningCLI):
    """LightningCLI that also resolves `--ckpt_path best|last` in a fresh process.

    Plain Lightning only knows the best checkpoint of the run it is in; here `best` and `last`
    mean the newest `best.ckpt` / `last.ckpt` written by any earlier run of the same logger folder.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(
            MNISTClassifier,
            MNISTDataModule,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,  # the model takes its optimizer as --model.optimizer
            **kwargs,
        )

    def _resolve_ckpt_path(self) -> None:
        config = self.config_init[self.subcommand]
        alias = config.get("ckpt_path")
        if alias is None:
            return
        if alias not in CHECKPOINT_ALIASES:
            if not Path(alias).is_file():
                raise CheckpointNotFoundError(f"--ckpt_path {alias}: no such checkpoint file")
            return
        roots = self._checkpoint_roots()
        found = [path for root in roots if root.is_dir() for path in root.glob(f"**/{alias}.ckpt")]
        if not found:
            where = " or ".join(str(root) for root in roots)
            raise CheckpointNotFoundError(f"--ckpt_path {alias}: no {alias}.ckpt under {where}; run `fit` first")
        config["ckpt_path"] = str(max(found, key=lambda path: path.stat().st_mtime))
        rank_zero_info(f"--ckpt_path {alias} -> {config['ckpt_path']}")

    def _checkpoint_roots(self) -> list[Path]:
        """Where earlier runs wrote checkpoints: the logger's folder of runs, and any explicit dirpath."""
        trainer = self.trainer
        logger_root = getattr(trainer.logger, "root_dir", None) or trainer.default_root_dir
        explicit = [cb.dirpath for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
        return [Path(root) for root in dict.fromkeys([logger_root, *explicit])]

    before_fit = before_validate = before_test = before_predict = _resolve_ckpt_path
