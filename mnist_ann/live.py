"""Watching a run live: a callback that reports its progress as it trains, for the page's lab (`mnist-ann serve`).

`LiveReport` appends one JSON line per event to `live.jsonl` in the run's folder, and keeps the network's
current weights in `live.pt` beside it (a checkpoint of the weights alone), so that a drawing can be answered
by the model as it learns:

    {"event": "start", "step": 0, "max_steps": 8600, "hidden_sizes": [128, 64], ...}
    {"event": "train", "step": 20, "epoch": 0, "loss": 2.18}           every `every_n_steps` steps (or more)
    {"event": "weights", "step": 200, "image": "data:image/png;..."}   every `weights_every_n_steps` (or more)
    {"event": "val", "step": 860, "epoch": 0, "acc": 0.93, "loss": 0.24}  after each validation
    {"event": "end", "step": 8600, "reason": "finished"}                or "stopped", "failed"

Only the first process writes (a multi-process run reports once). The service reads the file as it grows;
nothing else depends on it, so a run without this callback is an ordinary run, and one with it is too.
"""

import base64
import json
import time
from io import BytesIO
from pathlib import Path

import lightning as L
import torch
from jsonargparse.typing import NonNegativeFloat, PositiveInt
from lightning.pytorch.callbacks import Callback
from torchvision.transforms.functional import to_pil_image

from mnist_ann.explain import weight_tiles
from mnist_ann.files import replaced_whole

EVENTS, WEIGHTS = "live.jsonl", "live.pt"
SHOWN_UNITS = 64  # first-layer units drawn as weight tiles: enough to see strokes form, small enough to send often


class LiveReport(Callback):
    """Training loss, validation accuracy, the first layer's weight tiles and the current weights, as the run goes.

    Args:
        every_n_steps: the mean training loss since the last report, once every this many steps...
        loss_every_seconds: ...but not more often than this.
        weights_every_n_steps: the weight tiles and `live.pt`, at the start and once every this many steps...
        weights_every_seconds: ...but not more often than this. A fast small model would otherwise spend
            its time drawing tiles, and the page answering the drawing anew and redrawing curves, rather
            than training (benchmarks/lab.py measures what watching costs).
    """

    def __init__(
        self,
        every_n_steps: PositiveInt = 20,
        loss_every_seconds: NonNegativeFloat = 0.25,
        weights_every_n_steps: PositiveInt = 200,
        weights_every_seconds: NonNegativeFloat = 2.0,
    ) -> None:
        self.every_n_steps, self.weights_every_n_steps = every_n_steps, weights_every_n_steps
        self.loss_every_seconds, self.weights_every_seconds = loss_every_seconds, weights_every_seconds
        self.loss_written = self.weights_written = 0.0
        self.folder: Path | None = None
        self.losses: list[torch.Tensor] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.log_dir is None:
            return
        self.folder = Path(trainer.log_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        image = self.save_weights(trainer, pl_module)  # before the first line: whoever reads it can load them
        self.write(
            event="start",
            step=trainer.global_step,
            epoch=trainer.current_epoch,
            max_steps=trainer.estimated_stepping_batches,  # the whole run's, a resumed one's too: its axis goes on
            max_epochs=trainer.max_epochs,
            hidden_sizes=list(pl_module.hparams.hidden_sizes),
        )
        self.write(event="weights", step=trainer.global_step, image=image)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.folder is None:
            return
        self.losses.append(outputs["loss"].detach())
        step = trainer.global_step
        if step % self.every_n_steps == 0 and time.monotonic() - self.loss_written >= self.loss_every_seconds:
            loss = torch.stack(self.losses).mean().item()
            self.losses.clear()
            self.loss_written = time.monotonic()
            self.write(event="train", step=step, epoch=trainer.current_epoch, loss=loss)
        due = time.monotonic() - self.weights_written >= self.weights_every_seconds
        if step % self.weights_every_n_steps == 0 and due:
            self.report_weights(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.folder is None or trainer.sanity_checking:
            return
        metrics = {
            name.split("/")[1]: trainer.callback_metrics[name].item()
            for name in ("val/acc", "val/loss")
            if name in trainer.callback_metrics
        }
        self.write(event="val", step=trainer.global_step, epoch=trainer.current_epoch, **metrics)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.finish(trainer, pl_module, "stopped" if trainer.received_sigterm else "finished")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.finish(trainer, pl_module, "stopped" if trainer.received_sigterm else "failed")

    def finish(self, trainer: L.Trainer, pl_module: L.LightningModule, reason: str) -> None:
        if self.folder is None:
            return
        self.report_weights(trainer, pl_module)
        self.write(event="end", step=trainer.global_step, reason=reason)
        self.folder = None

    def report_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(event="weights", step=trainer.global_step, image=self.save_weights(trainer, pl_module))

    def save_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        """The weights for predictions, written whole (a reader never sees half); the tiles, as a data URL."""
        picture = BytesIO()
        to_pil_image(weight_tiles(pl_module.net, columns=8, units=SHOWN_UNITS)).save(picture, format="PNG")
        image = "data:image/png;base64," + base64.b64encode(picture.getvalue()).decode()
        weights = {
            "pytorch-lightning_version": L.__version__,  # what makes it a checkpoint `load_from_checkpoint` takes
            "global_step": trainer.global_step,
            "hyper_parameters": dict(pl_module.hparams),
            "state_dict": pl_module.state_dict(),
        }
        with replaced_whole(self.folder / WEIGHTS) as file:
            torch.save(weights, file)
        self.weights_written = time.monotonic()
        return image

    def write(self, **event) -> None:
        with open(self.folder / EVENTS, "a") as file:  # one write per line: a reader sees whole lines
            file.write(json.dumps(event) + "\n")
