"""Learning-rate schedules over a whole run, stepped after every batch.

A schedule shapes the rate from the first step to the last: warm up from a small rate (large
steps on random weights are unstable), travel fast while the loss falls, and finish with small steps
that settle into a minimum instead of bouncing around it. Each class here takes the optimizer and
the run's number of steps, which the model reads from the trainer (`max_epochs` x batches per
epoch), so that a config names the shape and never repeats the step count:

    model:
      scheduler:
        class_path: mnist_ann.schedules.OneCycle
        init_args: {pct_start: 0.2}   # peaking at the optimizer's rate
"""

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

# What the model's `scheduler` option holds: a schedule class with its settings, given the optimizer
# and the run's total steps when training starts.
ScheduleCallable = Callable[[Optimizer, int], LRScheduler]


class OneCycle(OneCycleLR):
    """Smith's one-cycle policy (torch's `OneCycleLR`): the rate climbs from `max_lr / div_factor` to
    `max_lr` over the first `pct_start` of the run, then anneals along a cosine to nearly zero; SGD's
    momentum moves the opposite way, between `base_momentum` and `max_momentum`. Without `max_lr`, the
    peak is the optimizer's own rate, so that the rate a config or a search gives the optimizer is the
    peak for SGD and Adam alike."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        max_lr: float | None = None,
        pct_start: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
    ) -> None:
        super().__init__(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups] if max_lr is None else max_lr,
            total_steps=total_steps,
            pct_start=pct_start,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
        )


class WarmupCosine(LambdaLR):
    """The optimizer's rate, reached linearly over the first `warmup` share of the run, then lowered
    along a half cosine to `final_ratio` times that rate at the last step."""

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup: float = 0.05, final_ratio: float = 0.0) -> None:
        warmup_steps = max(1, round(warmup * total_steps))

        def factor(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        super().__init__(optimizer, factor)
