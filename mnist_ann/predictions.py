"""Where `predict` results go: one row per image, on the console and optionally into a CSV or JSON Lines file."""

import csv
import json
import sys
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from mnist_ann.errors import ConfigError

# The writer names rows from the batches themselves, so Lightning's batch indices (which it can only
# track for torch DataLoaders) are not needed.
warnings.filterwarnings("ignore", message="Couldn't infer the batch indices fetched from your dataloader")

COLUMNS = ["file", "digit", "probability", *(f"p{digit}" for digit in range(10))]


class PredictionWriter(BasePredictionWriter):
    """Writes each prediction as it is made: the file (or MNIST test image), the predicted digit, its
    probability and all ten probabilities.

    Args:
        output: also write the rows to this file: `.csv`, or `.jsonl` for JSON Lines.
        console: print the rows.
    """

    def __init__(self, output: str | None = None, console: bool = True) -> None:
        super().__init__(write_interval="batch")
        if output and Path(output).suffix not in (".csv", ".jsonl"):
            raise ConfigError(f"PredictionWriter output must end in .csv or .jsonl, not {output}")
        self.output, self.console = Path(output) if output else None, console

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._file = self.output.open("w", newline="") if self.output and trainer.is_global_zero else None
        if self._file and self.output.suffix == ".csv":
            csv.writer(self._file).writerow(COLUMNS)
        if self.console:
            self._print(trainer, f"{'file':<40} digit  probability")

    def write_on_batch_end(
        self, trainer, pl_module, prediction: dict[str, Tensor], batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        names = trainer.datamodule.predict_names
        for key, digit, probabilities in zip(
            batch[1].tolist(), prediction["digits"].tolist(), prediction["probabilities"].tolist(), strict=True
        ):
            row = [names[key], digit, probabilities[digit], *probabilities]
            if self.console:
                self._print(trainer, f"{names[key]:<40} {digit:>5}  {probabilities[digit]:>11.4f}")
            if self._file and self.output.suffix == ".csv":
                csv.writer(self._file).writerow([*row[:2], *(f"{p:.6f}" for p in row[2:])])
            elif self._file:
                self._file.write(json.dumps(dict(zip(COLUMNS, row, strict=True))) + "\n")

    @staticmethod
    def _print(trainer: L.Trainer, line: str) -> None:
        """A whole line on stdout, above the progress bar rather than through it."""
        if bar := trainer.progress_bar_callback:
            bar.print(line)
        else:
            print(line, file=sys.stdout)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._file:
            self._file.close()
