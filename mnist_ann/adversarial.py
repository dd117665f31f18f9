"""Adversarial training: the loss also on training images moved where the network is most sensitive.

A network can be right on a digit and wrong on the same digit moved by an amount no eye sees, in the
direction that changes its output most. Training on such moved images too smooths its answers around
every training image, a regularizer as strong as dropout on MNIST:

- `fgsm` (Goodfellow et al. 2015, "Explaining and harnessing adversarial examples"): each image moved by
  `epsilon` per pixel in the direction of the sign of the loss's gradient with respect to its pixels (the
  fast gradient sign method); the loss on the moved images is added, `weight` times. One more forward
  and backward pass a step.
- `vat` (Miyato et al. 2018, "Virtual adversarial training"): the direction comes from the network's own
  answers, not the labels: the one along which its output distribution changes most, found from a random
  direction by one power iteration; the penalty is the KL divergence between the answers at the image and
  at the image moved by `epsilon` (the length of the move, over all 784 pixels) along it. Two more passes.

Both are made from the training batch, on its device, inside `training_step`: validation, test and
prediction never see them. VAT's random directions come from torch's global random state, which the
checkpoints keep (`MNISTClassifier.on_save_checkpoint`), so that a resumed run draws the same ones.
Pixels are normalized (mean 0.5, std 0.5: from -1 to 1), so a move of 0.1 is 5% of the ink's range.
"""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeFloat, PositiveFloat
from torch import Tensor, nn

Kind = Literal["fgsm", "vat"]


def unit(directions: Tensor) -> Tensor:
    """Each image's direction scaled to length 1 over its pixels (a zero direction stays zero)."""
    lengths = directions.flatten(1).norm(dim=1).clamp_min(1e-12)
    return directions / lengths.view(-1, *[1] * (directions.dim() - 1))


@dataclass(frozen=True)
class Adversarial:
    """The adversarial regularizer of `training_step` (module docstring).

    Args:
        kind: `fgsm` (moved against the labels, needs any task) or `vat` (against the network's own answers;
            for `multiclass`).
        epsilon: how far each image is moved: per pixel for `fgsm`, over the whole image for `vat`.
        weight: the penalty's weight beside the loss.
        xi: for `vat`: the length of the first, random probe of the power iteration.
    """

    kind: Kind = "vat"
    epsilon: PositiveFloat = 2.0
    weight: NonNegativeFloat = 1.0
    xi: PositiveFloat = 10.0

    def penalty(self, net: nn.Module, images: Tensor, outputs: Tensor, targets: Tensor, loss) -> Tensor:
        """The term added to the loss of the batch `images` (whose outputs, `outputs`, the network gave)."""
        if self.kind == "fgsm":
            probe = images.detach().requires_grad_()
            (gradient,) = torch.autograd.grad(loss(net(probe), targets), probe)
            return self.weight * loss(net(images + self.epsilon * gradient.sign()), targets)
        return self.weight * self.virtual(net, images, outputs)

    def virtual(self, net: nn.Module, images: Tensor, outputs: Tensor) -> Tensor:
        """VAT's KL divergence from the answers at `images` to those at the images moved the worst way."""
        answers = outputs.detach().log_softmax(dim=1)

        def divergence(moved: Tensor) -> Tensor:
            return F.kl_div(net(moved).log_softmax(dim=1), answers, reduction="batchmean", log_target=True)

        probe = (self.xi * unit(torch.randn_like(images))).requires_grad_()
        (gradient,) = torch.autograd.grad(divergence(images + probe), probe)
        return divergence(images + self.epsilon * unit(gradient))
