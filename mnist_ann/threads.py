"""How many threads torch computes with: as many as the work of one step pays for, and no more.

A step of the recipe's network (784-128-64-10, batch 64) is a handful of small matrix products. torch splits
each across its threads (one per core by default), which meet at a barrier after every one: on a quiet
machine that is as fast as one thread, and on a machine whose cores are shared (a browser, the page's
service, another run) every barrier waits for the slowest thread to be scheduled again, and `fit` was up to
16 times slower. A wide network at a large batch gives each thread enough work between barriers for more
threads to pay. `benchmarks/speed.py --busy` measures both, quiet and beside one CPU-bound process per core.

`threads: auto` (every command's default, saved in the run's config.yaml) chooses by the work of a step;
a number sets it. The same rule serves `fit`, `validate`, `test`, `predict`, the search's trials, the
lab's runs (they are `fit`), and the prediction service (a step of one picture).
"""

import os
from typing import Literal

import torch
from jsonargparse.typing import PositiveInt

AUTO = "auto"
Threads = PositiveInt | Literal["auto"]
# Multiply-adds of one training step (parameters x batch size) from which every core's thread pays: the recipe's
# 7 million take longest with more than one; the best recipes' 476 million (784-1024-1024-10, batch 256) gain from them.
THREADED_WORK = 100_000_000
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def chosen_threads(setting: int | str, parameters: int, batch_size: int) -> int:
    """The threads for a network of `parameters` trained (or evaluated) `batch_size` images at a time: with
    `auto`, never more than `OMP_NUM_THREADS` where it is set (what a cluster's job or a shared machine allows)."""
    if setting != AUTO:
        return int(setting)
    if parameters * batch_size < THREADED_WORK:
        return 1
    allowed = os.environ.get("OMP_NUM_THREADS", "").split(",")[0]  # OpenMP's form: a number, or one per level
    return min(CORES, int(allowed)) if allowed.isdigit() and int(allowed) > 0 else CORES


def use_threads(setting: int | str, model: torch.nn.Module, batch_size: int) -> int:
    """torch's threads set for this process as `chosen_threads` says; the number set."""
    threads = chosen_threads(setting, sum(parameter.numel() for parameter in model.parameters()), batch_size)
    torch.set_num_threads(threads)
    return threads
