"""Time the 10-epoch recipe three ways, each as a whole process, in one invocation.

1. textbook: torchvision MNIST with per-sample ToTensor + Normalize, DataLoader(batch 64), plain loop.
2. bare: plain loop over the whole training set normalized once into a tensor, batches sliced
   from a shuffled index (the floor: nothing but the model's own arithmetic and dispatch).
3. fit: `python -m mnist_ann fit --config configs/default.yaml` (progress bar, validation every
   epoch, TensorBoard, checkpoints), then `test --ckpt_path last` (not timed) for its accuracy.

The two hand-written loops are plain PyTorch that imports neither Lightning nor this package, and
they train on all 60,000 training images; `fit` trains on 55,000 and validates on the other 5,000
every epoch, so it does about the same arithmetic per epoch, plus everything users see.

    python benchmarks/speed.py --data-dir ../shared/data [--epochs 10] [--repeats 5] [--no-textbook]
    python benchmarks/speed.py --data-dir ../shared/data --busy [--epochs 3]

The last line reads `speedup_vs_textbook=<textbook s / fit s> overhead_vs_bare=<fit s / bare s>`,
each the median over the rounds of the ratio within a round. `--no-textbook` leaves the slowest
pipeline out, for comparing two versions of `fit` by `overhead_vs_bare` alone.

`--busy` times the bare loop and `fit` on a quiet machine and beside one CPU-bound process per core
(started and stopped here), with torch's default threads (one per core) and with `threads: auto`
(`mnist_ann.threads`); then one epoch of the recipe widened to the best recipes' 784-1024-1024-10, at
batch 256, the same four ways. Its last line reads `busy_over_quiet_default=<x> busy_over_quiet_auto=<y>`
for the recipe's fit.
"""

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZE = 64


def recipe_model() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(42)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor) -> None:
    optimizer.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


@torch.no_grad()
def accuracy(model: nn.Module, batches) -> float:
    correct = total = 0
    for images, labels in batches:
        correct += (model(images).argmax(1) == labels).sum().item()
        total += len(labels)
    return correct / total


def run_textbook(data_dir: str, epochs: int) -> float:
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train = DataLoader(MNIST(data_dir, train=True, transform=transform), batch_size=BATCH_SIZE, shuffle=True)
    test = DataLoader(MNIST(data_dir, train=False, transform=transform), batch_size=1000)
    model, optimizer = recipe_model()
    for _ in range(epochs):
        for images, labels in train:
            train_step(model, optimizer, images, labels)
    return accuracy(model, test)


def preloaded(data_dir: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as one normalized float tensor (N, 1, 28, 28) and its labels."""
    dataset = MNIST(data_dir, train=train)
    return (dataset.data.unsqueeze(1).float() / 255 - 0.5) / 0.5, dataset.targets


def run_bare(data_dir: str, epochs: int) -> float:
    images, labels = preloaded(data_dir, train=True)
    model, optimizer = recipe_model()
    for _ in range(epochs):
        for index in torch.randperm(len(images)).split(BATCH_SIZE):
            train_step(model, optimizer, images[index], labels[index])
    return accuracy(model, [preloaded(data_dir, train=False)])


def timed(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="folder holding MNIST/raw/")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="rounds; the ratios are medians over them")
    parser.add_argument("--no-textbook", action="store_true", help="time only bare and fit (overhead_vs_bare)")
    parser.add_argument("--busy", action="store_true", help="quiet and beside a CPU-bound process per core")
    parser.add_argument("--only", choices=["textbook", "bare"], help=argparse.SUPPRESS)  # one loop, in this process
    parser.add_argument("--torch-threads", type=int, help=argparse.SUPPRESS)  # the loop's threads
    args = parser.parse_args()
    data_dir = str(Path(args.data_dir).resolve())

    if args.only:
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        runner = run_textbook if args.only == "textbook" else run_bare
        print(json.dumps({"test_acc": runner(data_dir, args.epochs)}))
        return
    if args.busy:
        quiet_and_busy(data_dir, args.epochs)
        return

    loop = [sys.executable, __file__, "--data-dir", data_dir, "--epochs", str(args.epochs), "--only"]
    cli = [sys.executable, "-m", "mnist_ann"]
    loops = ("bare",) if args.no_textbook else ("textbook", "bare")
    seconds: dict[str, list[float]] = {**{name: [] for name in loops}, "mnist_ann fit": []}
    accuracy: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as runs:
        common = ["--config", str(ROOT / "configs" / "default.yaml"), "--data.data_dir", data_dir]
        common += ["--trainer.logger.init_args.save_dir", runs]
        # Rounds interleave the pipelines so that a slow spell of a shared machine hits all of them alike.
        for round_ in range(1, args.repeats + 1):
            for name in loops:
                wall, output = timed([*loop, name], ROOT)
                seconds[name].append(wall)
                accuracy[name] = json.loads(output.strip().splitlines()[-1])["test_acc"]
            wall, _ = timed([*cli, "fit", *common, "--trainer.max_epochs", str(args.epochs)], ROOT)
            seconds["mnist_ann fit"].append(wall)
            print(f"round {round_}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in seconds.items()), file=sys.stderr)
        _, output = timed([*cli, "test", *common, "--ckpt_path", "last"], ROOT)
        accuracy["mnist_ann fit"] = float(re.search(r"test/acc[\s│]+([\d.]+)", output).group(1))

    best = {name: min(walls) for name, walls in seconds.items()}
    print(f"\n{'pipeline':<16}{'wall s':>9}{'s/epoch':>9}{'test acc':>10}   (fastest of {args.repeats} runs each)")
    for name, wall in best.items():
        print(f"{name:<16}{wall:>9.1f}{wall / args.epochs:>9.2f}{accuracy[name]:>10.2%}")
    # Ratios within each round, where the pipelines ran back to back on the machine in the same state;
    # the median over rounds is the figure reported (a slow spell in one round does not decide it).
    fit = seconds["mnist_ann fit"]
    overheads = [wall / bare for wall, bare in zip(fit, seconds["bare"], strict=True)]
    print("per round overhead: " + ", ".join(f"{overhead:.2f}" for overhead in overheads))
    summary = f"overhead_vs_bare={statistics.median(overheads):.2f}"
    if "textbook" in seconds:
        speedups = [textbook / wall for textbook, wall in zip(seconds["textbook"], fit, strict=True)]
        print("per round speedup: " + ", ".join(f"{speedup:.2f}" for speedup in speedups))
        summary = f"speedup_vs_textbook={statistics.median(speedups):.2f} {summary}"
    print(summary)


class Burners:
    """One CPU-bound process per core while the block runs: a machine whose cores are all wanted elsewhere."""

    def __enter__(self) -> "Burners":
        spin = "import time\nend = time.monotonic() + 3600\nwhile time.monotonic() < end: pass"
        self.processes = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def quiet_and_busy(data_dir: str, epochs: int) -> None:
    """The recipe's bare loop and fit, and one epoch of the wide network, quiet and busy, default and auto."""
    from mnist_ann.threads import CORES, chosen_threads

    loop = [sys.executable, __file__, "--data-dir", data_dir, "--epochs", str(epochs), "--only", "bare"]
    cli = [sys.executable, "-m", "mnist_ann", "fit", "--config", str(ROOT / "configs" / "default.yaml")]
    data = ["--data.data_dir", data_dir, "--trainer.enable_progress_bar=false"]
    recipe = [*cli, *data, "--trainer.max_epochs", str(epochs)]
    wide = ["--model.hidden_sizes=[1024,1024]", "--data.batch_size=256"]  # the best recipes' layers, fast.yaml's batch
    wide_epoch = [*cli, *wide, *data, "--trainer.max_epochs", "1"]
    recipe_threads = chosen_threads("auto", 109_386, BATCH_SIZE)
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        logs = ["--trainer.logger.init_args.save_dir", runs]
        for world in ("quiet", "busy"):
            for setting in ("default", "auto"):
                threads = CORES if setting == "default" else recipe_threads
                measured = {}
                with Burners() if world == "busy" else contextlib.nullcontext():
                    measured["bare"] = timed([*loop, "--torch-threads", str(threads)], ROOT)[0]
                    fit_threads = ["--threads", str(CORES) if setting == "default" else "auto"]
                    measured["fit"] = timed([*recipe, *logs, *fit_threads], ROOT)[0]
                    measured["wide, 1 epoch"] = timed([*wide_epoch, *logs, *fit_threads], ROOT)[0]
                rows.append((world, setting, measured))
                print(
                    f"{world:6} {setting:8} " + "  ".join(f"{k} {v:.1f} s" for k, v in measured.items()),
                    file=sys.stderr,
                )
    print(f"\n{CORES} cores; the recipe {epochs} epochs; default: {CORES} threads; auto: as mnist_ann.threads says")
    print(f"{'machine':8}{'threads':9}{'bare s':>9}{'fit s':>9}{'wide 1 epoch s':>16}")
    for world, setting, measured in rows:
        print(
            f"{world:8}{setting:9}"
            + "".join(f"{measured[k]:>{w}.1f}" for k, w in (("bare", 9), ("fit", 9), ("wide, 1 epoch", 16)))
        )
    fit = {(world, setting): measured["fit"] for world, setting, measured in rows}
    print(
        f"busy_over_quiet_default={fit['busy', 'default'] / fit['quiet', 'default']:.2f} "
        f"busy_over_quiet_auto={fit['busy', 'auto'] / fit['quiet', 'auto']:.2f} "
        f"auto_over_default_quiet={fit['quiet', 'auto'] / fit['quiet', 'default']:.2f}"
    )


if __name__ == "__main__":
    main()
