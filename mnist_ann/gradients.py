"""The gradients while `fit` trains, as TensorBoard scalars: each layer's gradient norm, and how far each optimizer
step moves the layer's weights against their size (the update-to-weight ratio, the classic check of a learning
rate). docs/monitoring.md says how to read them.

Measured once every logging window (`trainer.log_every_n_steps`), on the step that is logged, through Lightning's
own `grad_norm`: the steps between pay nothing.
"""

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import grad_norm
from torch import nn


def layer_names(net: nn.Module) -> dict[str, str]:
    """Each linear layer's weight, by parameter name: its name on the charts (hidden_1, ..., output)."""
    linears = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    return {f"{name}.weight": f"hidden_{index + 1}" for index, name in enumerate(linears[:-1])} | {
        f"{linears[-1]}.weight": "output"
    }


class GradientMonitor(Callback):
    """`gradients/norm/<layer>`: the L2 norm of the loss's gradient with respect to the layer's weights, and
    `gradients/update_ratio/<layer>`: ||W after the step - W before|| / ||W before||, every logging window."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}

    def due(self, trainer: L.Trainer) -> bool:  # the step Lightning logs: every log_every_n_steps-th
        return (trainer.global_step + 1) % trainer.log_every_n_steps == 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not self.due(trainer):
            return
        names = layer_names(pl_module.net)
        norms = grad_norm(pl_module.net, norm_type=2)
        for parameter, layer in names.items():
            if (norm := norms.get(f"grad_2.0_norm/{parameter}")) is not None:
                pl_module.log(f"gradients/norm/{layer}", norm, on_step=True, on_epoch=False, sync_dist=False)
        weights = dict(pl_module.net.named_parameters())
        self.before = {layer: weights[parameter].detach().clone() for parameter, layer in names.items()}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if not self.before:
            return
        weights = dict(pl_module.net.named_parameters())
        for parameter, layer in layer_names(pl_module.net).items():
            before = self.before[layer]
            ratio = (weights[parameter].detach() - before).norm() / before.norm()
            pl_module.log(f"gradients/update_ratio/{layer}", ratio, on_step=True, on_epoch=False, sync_dist=False)
        self.before = {}
