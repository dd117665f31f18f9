"""What each picture of `TensorBoardMonitor`, and `GradientMonitor`'s scalars, cost as a share of the default `fit`
and `test`.

Runs `fit` with `configs/default.yaml` (10 epochs on the real MNIST) and `test --ckpt_path best` in
this process, with a timer around each of the monitor's drawing methods, and prints the seconds
each took against the command's wall time.

    python benchmarks/monitor.py --data-dir ../shared/data [--epochs 10]
"""

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mnist_ann.cli import MNISTCLI  # noqa: E402
from mnist_ann.gradients import GradientMonitor  # noqa: E402
from mnist_ann.monitoring import TensorBoardMonitor  # noqa: E402

DRAWINGS = {
    "_log_weights": "weights/hidden_1: 32 units' tiles, every epoch",
    "_log_embedding": "projector: embedding of 1,000 test images",
    "_log_attributions": "test/attributions: Integrated Gradients of 4 digits",
    "_log_confusion_matrix": "confusion matrices with their counts",
    "_log_hparams": "HParams session (existing)",
}
GRADIENTS = {  # called every step; measuring only once every logging window
    "on_before_optimizer_step": "gradients/norm: each layer's gradient norm",
    "on_train_batch_end": "gradients/update_ratio: each layer's step",
}


def timed(spent: dict, name: str, original):
    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    spent = {command: defaultdict(float) for command in ("fit", "test")}
    wall = {}
    timers = [(TensorBoardMonitor, name) for name in DRAWINGS] + [(GradientMonitor, name) for name in GRADIENTS]
    originals = {(kind, name): getattr(kind, name) for kind, name in timers}
    with tempfile.TemporaryDirectory() as logs:
        common = ["--config", str(ROOT / "configs" / "default.yaml"), "--data.data_dir", args.data_dir]
        common += ["--trainer.logger.init_args.save_dir", logs]
        for command, extra in (("fit", ["--trainer.max_epochs", str(args.epochs)]), ("test", ["--ckpt_path", "best"])):
            for (kind, name), original in originals.items():
                setattr(kind, name, timed(spent[command], name, original))
            start = time.perf_counter()
            MNISTCLI(args=[command, *common, *extra])
            wall[command] = time.perf_counter() - start
    print(f"\n{'drawing':<52}{'fit s':>8}{'share':>8}{'test s':>8}{'share':>8}")
    for name, title in {**DRAWINGS, **GRADIENTS}.items():
        fit, test = spent["fit"][name], spent["test"][name]
        print(f"{title:<52}{fit:>8.2f}{fit / wall['fit']:>8.1%}{test:>8.2f}{test / wall['test']:>8.1%}")
    print(f"{'the whole command (wall)':<52}{wall['fit']:>8.2f}{'':>8}{wall['test']:>8.2f}")


if __name__ == "__main__":
    main()
