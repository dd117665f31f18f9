"""Where `predict` results go: one row per image, on the console and optionally into a CSV or JSON Lines file."""

import csv
import json
import sys
from itertools import zip_longest
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from mnist_ann.errors import ConfigError
from mnist_ann.explain import class_attributions, explanation_figure


class PredictionWriter(BasePredictionWriter):
    """Writes each prediction as it is made: the file (or test image), the predicted class (its id
    and name) and its probability with those of every class, or for regression the predicted value.

    Args:
        output: also write the rows to this file: `.csv`, or `.jsonl` for JSON Lines.
        console: print the rows.
        explain: a folder for one picture per image: what the network saw, which pixels pushed it toward
            the predicted class (`mnist_ann.explain`), and the probabilities.
    """

    def __init__(self, output: str | None = None, console: bool = True, explain: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output, self.console = Path(output) if output else None, console
        self.explain = Path(explain) if explain else None
        self._file, self._csv = None, None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """The options checked when predict starts, not when the command line is parsed: the parser would bury
        the message in its own report of every callback type it tried."""
        if stage != "predict":
            return
        if self.output and self.output.suffix not in (".csv", ".jsonl"):
            raise ConfigError(f"--trainer.callbacks.output must end in .csv or .jsonl, not {self.output}")
        if self.explain and self.explain.exists() and not self.explain.is_dir():
            raise ConfigError(f"--trainer.callbacks.explain: {self.explain} is a file; name a folder (made if missing)")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.class_names = pl_module.class_names
        self._csv = None
        # Under DDP each process writes its own part; the first joins them into `output` at the end.
        self._file = writable(self._part(trainer), "output", self.output) if self.output else None
        if self.explain:  # (on every process: each writes its own pictures there)
            try:
                self.explain.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                reason = f"cannot write there ({error.strerror})"
                raise ConfigError(f"--trainer.callbacks.explain {self.explain}: {reason}") from None
        if self.console:
            self._print(trainer, f"{'file':<40} {'prediction':>12}  score")

    def write_on_batch_end(
        self, trainer, pl_module, prediction: dict[str, Tensor], batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        names = trainer.datamodule.predict_names
        for position, (key, cls) in enumerate(zip(batch[1].tolist(), prediction["classes"].tolist(), strict=True)):
            row = {"file": names[key], "class": cls, "name": self.class_names[cls]}
            if "probabilities" in prediction:  # classification: the class's probability, then every class's
                probabilities = prediction["probabilities"][position].tolist()
                row["probability"] = probabilities[cls]
                row |= {f"p{index}": p for index, p in enumerate(probabilities)}
                score = row["probability"]
            else:  # regression: the predicted value, of which `class` is the rounded digit
                row["value"] = score = prediction["values"][position].item()
            if self.console:
                self._print(trainer, f"{row['file']:<40} {row['name']:>12}  {score:.4f}")
            self._write(row)
        if self.explain:
            self._explain(pl_module, batch, prediction, names)

    def _explain(self, pl_module, batch, prediction: dict[str, Tensor], names: list[str]) -> None:
        images, keys, classes = batch[0], batch[1].tolist(), prediction["classes"]
        toward = class_attributions(pl_module, images, classes).cpu()
        for position, key in enumerate(keys):
            probabilities = prediction["probabilities"][position].tolist() if "probabilities" in prediction else None
            figure = explanation_figure(
                images[position].cpu(), toward[position], self.class_names, classes[position].item(), probabilities
            )
            figure.savefig(self.explain / f"{key:05d}_{Path(names[key]).stem.replace(' ', '-')}.png")

    def _write(self, row: dict) -> None:
        if not self._file:
            return
        if self.output.suffix == ".jsonl":
            self._file.write(json.dumps(row) + "\n")
            return
        if self._csv is None:
            self._csv = csv.DictWriter(self._file, fieldnames=list(row))
            self._csv.writeheader()
        self._csv.writerow({key: f"{value:.6f}" if isinstance(value, float) else value for key, value in row.items()})

    @staticmethod
    def _print(trainer: L.Trainer, line: str) -> None:
        """A whole line on stdout, above the progress bar rather than through it."""
        if bar := trainer.progress_bar_callback:
            bar.print(line)
        else:
            print(line, file=sys.stdout)

    def _part(self, trainer: L.Trainer) -> Path:
        if trainer.world_size == 1:
            return self.output
        return self.output.with_name(f".{self.output.name}.part{trainer.global_rank}")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._file:
            return
        self._file.close()
        if trainer.world_size == 1:
            return
        trainer.strategy.barrier()  # every part written
        if trainer.is_global_zero:
            self._join([self.output.with_name(f".{self.output.name}.part{rank}") for rank in range(trainer.world_size)])

    def _join(self, parts: list[Path]) -> None:
        """The processes' rows in the order of the images: process r predicted images r, r + N, r + 2N, ..."""
        rows = [part.read_text().splitlines(keepends=True) for part in parts]
        header = [] if self.output.suffix == ".jsonl" else [next((r[0] for r in rows if r), "")]
        if header:
            rows = [r[1:] for r in rows]
        interleaved = [row for group in zip_longest(*rows) for row in group if row is not None]
        self.output.write_text("".join(header + interleaved))
        for part in parts:
            part.unlink()


def writable(path: Path, option: str, named: Path):
    try:
        return path.open("w", newline="")
    except OSError as error:
        raise ConfigError(f"--trainer.callbacks.{option} {named}: cannot write there ({error.strerror})") from None
