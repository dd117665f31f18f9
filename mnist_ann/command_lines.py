"""Command lines as text: the config files one names, one with an option left out, a config file refused by its
name, and the summary that ends a `fit` with the command that tests its best checkpoint."""

import itertools
import shlex
from pathlib import Path

import torch
import yaml
from lightning.pytorch.cli import LightningArgumentParser


def fit_summary(trainer, command_line: list[str]) -> str:
    """The best checkpoint's score and epoch (counted from 0, as the progress bar counts), and how to test it."""
    best = next((callback for callback in trainer.checkpoint_callbacks if callback.monitor), None)
    if best is None or not best.best_model_path or best.best_model_score is None:
        return ""
    score = best.best_model_score.item()
    shown = f"{score:.2%}" if best.monitor.endswith("acc") else f"{score:.4g}"
    path = str(Path(best.best_model_path))  # (without Lightning's leading ./)
    epoch = torch.load(path, map_location="cpu", weights_only=True)["epoch"]
    test = ["mnist-ann", "test", *without_option(command_line[1:], "--ckpt_path"), "--ckpt_path", path]
    return (
        f"Best {best.monitor} {shown} in epoch {epoch} (of 0-{trainer.current_epoch - 1}), kept as {path}\n"
        f"Test it on the test images: {shlex.join(test)}"
    )


def config_files(args: list[str]) -> list[str]:
    """The config files a command line names, in order."""
    named = []
    for option, value in itertools.pairwise(["", *args]):
        if option in ("--config", "-c"):
            named.append(value)
        elif value.startswith("--config="):
            named.append(value.split("=", 1)[1])
    return named


def check_config_files(parser: LightningArgumentParser, args: list[str]) -> None:
    """Refuse an empty or malformed YAML config by its name (the parser reports neither by name)."""
    for path in map(Path, config_files(args)):
        if not path.is_file():
            continue  # the parser says so itself
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            parser.error(f"{path}: not valid YAML: {error.problem} (line {mark.line + 1}, column {mark.column + 1})")
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            parser.error(f"{path}: not a YAML file ({error})")
        if content is None:
            parser.error(f"{path} is empty: a config holds settings such as `trainer:`, `model:` and `data:`")


def without_option(args: list[str], option: str) -> list[str]:
    """Command-line arguments with every `option VALUE` and `option=VALUE` left out."""
    kept, skip = [], False
    for arg in args:
        if not skip and arg != option and not arg.startswith(f"{option}="):
            kept.append(arg)
        skip = arg == option
    return kept
