"""The learning step on one picture, made visible: the loss for a target, the loss's gradient at every layer
(backpropagation, by torch's autograd), and steps of a run's optimizer taken on a private copy of the network.

Every number comes from the model itself: its task's loss (`task.loss`, as `training_step` computes it),
`loss.backward()`, and a `torch.optim` optimizer. The model given is never changed: the steps are taken on a
copy, made for the call and dropped with it. The network is looked at in evaluation mode (no dropout), so that
the same picture always shows the same gradients.
"""

import copy
import inspect
from collections.abc import Callable

import torch
from torch import Tensor, nn

from mnist_ann.model import MNISTClassifier
from mnist_ann.network import MLP

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
WEIGHT_PICTURES = 4  # the first layer's units whose weight gradient is shown, those with the largest gradient


def optimizer_factory(settings: dict, lr: float | None = None) -> tuple[OptimizerFactory, str, float]:
    """The optimizer a run's config names (`model.optimizer`: class_path and init_args), at rate `lr` (the run's
    own by default): (factory, its name, its rate). Only `torch.optim`'s optimizers are built: a config is never
    a way to run other code."""
    module, _, name = str(settings.get("class_path", "")).rpartition(".")
    kind = getattr(torch.optim, name, None) if module == "torch.optim" else None
    if not (isinstance(kind, type) and issubclass(kind, torch.optim.Optimizer)):
        raise ValueError(f"optimizer: {settings.get('class_path')!r} is not one of torch.optim's")
    accepted = inspect.signature(kind).parameters
    arguments = {key: value for key, value in (settings.get("init_args") or {}).items() if key in accepted}
    rate = arguments.get("lr", accepted["lr"].default) if lr is None else lr
    return (lambda params: kind(params, **{**arguments, "lr": rate})), name, rate


def loss_toward(net: MLP, task, image: Tensor, target: int) -> Tensor:
    """The loss of `image` (1, 28, 28, normalized) toward the class `target`, as `training_step` computes it."""
    return task.loss(net(image.unsqueeze(0)), task.targets(torch.tensor([target])))


def look(net: MLP, task, image: Tensor, target: int) -> dict:
    """One forward and backward pass of `image` toward `target`: the loss, the outputs, and for each layer its
    activation (the ReLU's output: after batch normalization, where the network has it) and dL/dz (z: its linear
    part's output)."""
    linears = net.linear_layers()
    seen: list[Tensor] = []
    activations: list[Tensor] = []

    def keep(module, inputs, output) -> None:
        output.retain_grad()
        seen.append(output)

    hooks = [layer.register_forward_hook(keep) for layer in linears]
    hooks += [
        layer.register_forward_hook(lambda module, inputs, output: activations.append(output.detach()))
        for layer in net.layers
        if isinstance(layer, nn.ReLU)
    ]
    try:
        net.zero_grad()
        loss = loss_toward(net, task, image, target)
        loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
    # dL/dW of the first layer, row by row: the unit's dL/dz times the input pixels.
    first = seen[0].grad[0]
    units = first.abs().argsort(descending=True)[:WEIGHT_PICTURES].tolist()
    predicted = task.predict(seen[-1].detach())
    return {
        "loss": loss.item(),
        "probabilities": predicted["probabilities"][0].tolist() if "probabilities" in predicted else None,
        "value": predicted["values"][0].item() if "values" in predicted else None,
        "class": predicted["classes"][0].item(),
        "output_gradient": seen[-1].grad[0].tolist(),
        "hidden": [
            {"activation": a[0].tolist(), "gradient": z.grad[0].tolist(), "off": (a[0] <= 0).tolist()}
            for z, a in zip(seen[:-1], activations, strict=True)
        ],
        "first_weights": [
            {"unit": unit, "gradient": linears[0].weight.grad[unit].reshape(image.shape[-2:]).tolist()}
            for unit in units
        ],
    }


def learning_steps(
    model: MNISTClassifier, image: Tensor, target: int, optimizer: OptimizerFactory, steps: int
) -> tuple[dict, dict | None, MLP]:
    """The picture looked at before, and after `steps` of `optimizer` on a copy of the network toward `target`
    (None for no step); the copy, stepped."""
    net = copy.deepcopy(model.net).eval()
    with torch.inference_mode(False), torch.enable_grad():
        before = look(net, model.task, image, target)
        if not steps:
            return before, None, net
        start = [layer.weight.detach().clone() for layer in net.linear_layers()]
        stepping = optimizer(list(net.parameters()))
        for _ in range(steps):
            stepping.zero_grad()
            loss_toward(net, model.task, image, target).backward()
            stepping.step()
        after = look(net, model.task, image, target)
    weights = [layer.weight.detach() for layer in net.linear_layers()]
    # Each layer's step, as a share of its weights' size: ||W_after - W_before|| / ||W_before||.
    after["moved"] = [((now - then).norm() / then.norm()).item() for now, then in zip(weights, start, strict=True)]
    return before, after, net
