"""What each lever does: the recipe with one change at a time, then the best recipe with one lever removed.

Every row is a real `mnist-ann fit` (then `test --ckpt_path best`) on the real MNIST, for 3 seeds; the
table gives each row's mean test accuracy, its spread (lowest-highest) and the mean `fit` wall time,
and a plot puts test accuracy against training time. Results are kept one line per finished run in
`<out>/runs.jsonl`, so that a second invocation resumes where the first stopped.

    python benchmarks/ablation.py --data-dir ../shared/data --jobs 2  # --out ablation --seeds 1 2 3 --only NAME ...

With `--jobs 2`, two runs train at a time, each on its share of the CPU's cores (`OMP_NUM_THREADS`): the
whole ablation takes less time, and every row is timed the same way, so rows compare with each other but
not with the times of a run that has the machine to itself.

The "without" rows start from `configs/best-augmented.yaml` trained for a shorter schedule (the table says
how long), to keep the whole ablation short enough for one sitting on a 2-core CPU.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RECIPE, BEST = ROOT / "configs" / "default.yaml", ROOT / "configs" / "best-augmented.yaml"
SHORT_EPOCHS = 8  # of the "without" rows
EMA = {
    "class_path": "lightning.pytorch.callbacks.EMAWeightAveraging",
    "init_args": {"decay": 0.999, "use_buffers": False},
}
ONE_CYCLE = {"class_path": "mnist_ann.schedules.OneCycle", "init_args": {"max_lr": 0.1}}
AFFINE = {"rotation": 10, "scale": 0.1, "shear": 10, "translation": 0.05}
ELASTIC = {"elastic_alpha": 36, "elastic_sigma": 6}
NO_AUGMENTATION = dict.fromkeys([*AFFINE, "elastic_alpha"], 0)

# name -> (what it changes, the overlay on the recipe). An overlay is a config: nested dicts, as in YAML.
ONE_CHANGE = {
    "recipe": ("784-128-64-10, SGD 0.01/0.9, batch 64, 10 epochs", {}),
    "wider": ("hidden layers 512-256", {"model": {"hidden_sizes": [512, 256]}}),
    "much wider": ("hidden layers 1024-1024", {"model": {"hidden_sizes": [1024, 1024]}}),
    "deeper": ("hidden layers 128-128-128-64", {"model": {"hidden_sizes": [128, 128, 128, 64]}}),
    "more epochs": ("30 epochs", {"trainer": {"max_epochs": 30}}),
    "Adam": (
        "Adam, lr 0.001",
        {"model": {"optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001}}}},
    ),
    "one-cycle": ("one-cycle schedule, peak lr 0.1", {"model": {"scheduler": ONE_CYCLE}}),
    "dropout": ("dropout 0.2 after each hidden layer", {"model": {"dropout": 0.2}}),
    "input dropout": ("dropout 0.1 on the input pixels", {"model": {"input_dropout": 0.1}}),
    "weight decay": ("weight decay 5e-4", {"model": {"optimizer": {"init_args": {"weight_decay": 0.0005}}}}),
    "max-norm": ("hidden units' incoming weights no longer than 1", {"model": {"max_norm": 1.0}}),
    "label smoothing": ("label smoothing 0.1", {"model": {"label_smoothing": 0.1}}),
    "weight averaging": ("EMA of the weights, decay 0.999", {"trainer": {"callbacks+": [EMA]}}),
    "affine augmentation": ("rotate, scale, shear, shift", {"data": {"augmentation": AFFINE}}),
    "elastic augmentation": ("elastic distortion", {"data": {"augmentation": ELASTIC}}),
    "batch norm": ("batch normalization in each hidden layer", {"model": {"batch_norm": True}}),
    "VAT": ("virtual adversarial training, epsilon 2", {"model": {"adversarial": {"kind": "vat", "epsilon": 2.0}}}),
    "FGSM": ("adversarial training (FGSM), epsilon 0.1", {"model": {"adversarial": {"kind": "fgsm", "epsilon": 0.1}}}),
}
WITHOUT = {
    "best, short": (f"configs/best-augmented.yaml, {SHORT_EPOCHS} epochs", {}),
    "without width": ("hidden layers 128-64", {"model": {"hidden_sizes": [128, 64]}}),
    "without batch norm": ("no batch normalization", {"model": {"batch_norm": False}}),
    "without one-cycle": (
        "the optimizer's rate 0.01 throughout",
        {"model": {"scheduler": None, "optimizer": {"init_args": {"lr": 0.01}}}},
    ),
    "without dropout": ("no dropout", {"model": {"dropout": 0.0}}),
    "without label smoothing": ("plain cross-entropy", {"model": {"label_smoothing": 0.0}}),
    "without weight averaging": ("the last weights, not their average", "no EMA"),
    "without augmentation": ("no distortions", {"data": {"augmentation": NO_AUGMENTATION}}),
    "without elastic": ("affine distortions only", {"data": {"augmentation": {"elastic_alpha": 0}}}),
}


def without_averaging(config: dict) -> dict:
    callbacks = config["trainer"]["callbacks+"]
    return {
        **config,
        "trainer": {
            **config["trainer"],
            "callbacks+": [c for c in callbacks if "WeightAveraging" not in c["class_path"]],
        },
    }


def configs_of(name: str, folder: Path) -> list[Path]:
    """The config files of a row: the recipe, then its overlay (for the "without" rows, the best recipe's first)."""
    if name in ONE_CHANGE:
        overlays = [ONE_CHANGE[name][1]]
    else:
        best = yaml.safe_load(BEST.read_text())
        best["trainer"]["max_epochs"] = SHORT_EPOCHS
        change = WITHOUT[name][1]
        overlays = [without_averaging(best)] if change == "no EMA" else [best, change]
    paths = [RECIPE]
    for index, overlay in enumerate(overlay for overlay in overlays if overlay):
        path = folder / f"{re.sub(r'[^a-z]+', '-', name.lower()).strip('-')}-{index}.yaml"
        path.write_text(yaml.safe_dump(overlay))
        paths.append(path)
    return paths


def run(name: str, seed: int, data_dir: Path, out: Path, threads: int) -> dict:
    folder = out / "runs" / f"{re.sub(r'[^a-z]+', '-', name.lower()).strip('-')}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    configs = [arg for path in configs_of(name, folder) for arg in ("--config", str(path))]
    common = [*configs, "--data.data_dir", str(data_dir), "--seed_everything", str(seed)]
    common += ["--trainer.logger.init_args.save_dir", str(folder)]
    command = [sys.executable, "-m", "mnist_ann"]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(
        [*command, "fit", *common, "--trainer.enable_progress_bar", "false"],
        check=True,
        capture_output=True,
        env=environment,
    )
    fit_seconds = time.perf_counter() - start
    tested = subprocess.run(
        [*command, "test", *common, "--ckpt_path", "best"], check=True, capture_output=True, text=True, env=environment
    )
    accuracy = float(re.findall(r"test/acc[\s│]+([\d.]+)", tested.stdout)[0])
    return {"row": name, "seed": seed, "test_acc": accuracy, "fit_s": round(fit_seconds, 1), "threads": threads}


def table(results: list[dict]) -> list[dict]:
    rows = []
    for name, (change, _) in {**ONE_CHANGE, **WITHOUT}.items():
        runs = [result for result in results if result["row"] == name]
        if runs:
            accuracies = [100 * result["test_acc"] for result in runs]
            rows.append(
                {
                    "row": name,
                    "change": change,
                    "seeds": len(runs),
                    "mean": statistics.mean(accuracies),
                    "low": min(accuracies),
                    "high": max(accuracies),
                    "fit_s": statistics.mean(result["fit_s"] for result in runs),
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| row | change | test accuracy, mean (low-high) | fit s |", "| --- | --- | ---: | ---: |"]
    for row in rows:
        spread = f"{row['mean']:.2f}% ({row['low']:.2f}-{row['high']:.2f}, {row['seeds']} seeds)"
        lines.append(f"| {row['row']} | {row['change']} | {spread} | {row['fit_s']:.0f} |")
    return "\n".join(lines)


def label_points(axes, rows: list[dict], size: int = 8) -> None:
    """Each row's name beside its point, moved above or below it (a line to its point) where it would cover a name
    already placed."""
    beside, *moved = ((6, -3), (10, 9), (10, -15), (10, 21), (10, -27), (10, 33))  # offsets, in points
    pixels = axes.figure.dpi / 72  # a point (of type) in pixels
    placed: list[tuple[float, float, float, float]] = []
    for row in rows:
        where = (row["fit_s"], row["mean"])
        x, y = axes.transData.transform(where)
        width, height = 0.6 * size * len(row["row"]) * pixels, 1.2 * size * pixels  # the name's box, about
        for offset in (beside, *moved):
            left, bottom = x + offset[0] * pixels, y + offset[1] * pixels
            box = (left, bottom, left + width, bottom + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        line = {} if offset == beside else {"arrowprops": {"arrowstyle": "-", "color": "grey", "linewidth": 0.5}}
        axes.annotate(row["row"], where, textcoords="offset points", xytext=offset, fontsize=size, **line)


def plot(rows: list[dict], path: Path, threads: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    figure, axes = plt.subplots(figsize=(10, 6.5), dpi=110)
    for row in rows:
        colour = "tab:blue" if row["row"] in ONE_CHANGE else "tab:orange"
        if row["row"] in ("recipe", next(iter(WITHOUT))):  # the two starting points, as lines to read the others by
            axes.axhline(row["mean"], color=colour, linestyle="--", linewidth=0.8, alpha=0.6)
        axes.errorbar(
            row["fit_s"],
            row["mean"],
            yerr=[[row["mean"] - row["low"]], [row["high"] - row["mean"]]],
            fmt="o",
            color=colour,
            capsize=3,
        )
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xticks([20, 30, 50, 70, 100, 150, 200, 300])
    times = [row["fit_s"] for row in rows]
    # Room on the right for the names of the slowest rows; after the ticks, which would widen it again.
    axes.set_xlim(min(times) / 1.1, max(times) * 1.7)
    axes.set_xlabel(f"fit wall time, seconds (log scale; {threads} thread(s) a run, on a 2-core CPU)")
    axes.set_ylabel("test accuracy, % (mean of 3 seeds; bars: lowest to highest)")
    axes.set_title(
        "Blue: the recipe with one change (dashed: the recipe).\n"
        f"Orange: configs/best-augmented.yaml for {SHORT_EPOCHS} epochs with one lever removed (dashed: all levers)."
    )
    axes.grid(alpha=0.3)
    figure.tight_layout()
    label_points(axes, rows)
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--only", nargs="+", choices=[*ONE_CHANGE, *WITHOUT], help="these rows alone")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each with its share of the cores")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    record = args.out / "runs.jsonl"
    results = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    measured = {(result["row"], result["seed"]) for result in results}  # by an earlier invocation
    todo = [(name, seed) for name in args.only or [*ONE_CHANGE, *WITHOUT] for seed in args.seeds]
    threads, recording = max(1, (os.cpu_count() or 1) // args.jobs), threading.Lock()

    def measure(name: str, seed: int) -> None:
        result = run(name, seed, args.data_dir.resolve(), args.out.resolve(), threads)
        with recording:
            print(json.dumps(result), flush=True)
            results.append(result)
            with record.open("a") as file:
                file.write(json.dumps(result) + "\n")

    with ThreadPoolExecutor(args.jobs) as pool:
        for done in [pool.submit(measure, *run_) for run_ in todo if run_ not in measured]:
            done.result()
    rows = table(results)
    print(markdown(rows))
    # The runs' own thread counts: earlier invocations may have run with other --jobs.
    plot(rows, args.out / "ablation.png", "/".join(sorted({str(result.get("threads", "?")) for result in results})))
    print(f"plot: {args.out / 'ablation.png'}")


if __name__ == "__main__":
    main()
