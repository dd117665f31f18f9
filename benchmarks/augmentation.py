"""What data augmentation costs, as a share of a training step, for the recipe's network and the best recipe's.

In this process, on random batches (the cost does not depend on what the images show): the time of
distorting one batch with `configs/best-augmented.yaml`'s distortions (`mnist_ann.augment`), against
the time of one bare training step (forward, cross-entropy, backward, SGD) of each network at its batch
size. Rounds alternate the two, and the figure is the median over rounds.

    python benchmarks/augmentation.py [--rounds 7] [--steps 50]

The last line reads `augmentation_share_recipe=<a / (a + step)> augmentation_share_best=<...>`.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from mnist_ann.augment import Distortion
from mnist_ann.data import NORMALIZED_RANGE
from mnist_ann.network import MLP

ROOT = Path(__file__).resolve().parent.parent
BEST = yaml.safe_load((ROOT / "configs" / "best-augmented.yaml").read_text())


def seconds_per_call(function, steps: int) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        function()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    distortion = Distortion(**BEST["data"]["augmentation"])
    generator = torch.Generator().manual_seed(0)
    networks = {"recipe": ([128, 64], 64), "best": (BEST["model"]["hidden_sizes"], BEST["data"]["batch_size"])}
    shares = {}
    for name, (hidden_sizes, batch_size) in networks.items():
        network = MLP(hidden_sizes, dropout=0.2 if name == "best" else 0.0)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
        images, labels = torch.rand(batch_size, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (batch_size,))

        def step(network=network, optimizer=optimizer, images=images, labels=labels) -> None:
            optimizer.zero_grad()
            F.cross_entropy(network(images), labels).backward()
            optimizer.step()

        def distort(images=images) -> None:
            distortion(images, NORMALIZED_RANGE[0], generator)

        rounds = []
        for _ in range(args.rounds):
            step_s, distort_s = seconds_per_call(step, args.steps), seconds_per_call(distort, args.steps)
            rounds.append((step_s, distort_s))
        step_s = statistics.median(s for s, _ in rounds)
        distort_s = statistics.median(d for _, d in rounds)
        shares[name] = statistics.median(d / (d + s) for s, d in rounds)
        print(
            f"{name}: hidden {hidden_sizes}, batch {batch_size}: training step {step_s * 1e3:.2f} ms, "
            f"distorting the batch {distort_s * 1e3:.2f} ms, share {shares[name]:.0%}"
        )
    print(" ".join(f"augmentation_share_{name}={share:.2f}" for name, share in shares.items()))


if __name__ == "__main__":
    main()
