"""`mnist-ann export`: the trained network as files that run without this package.

- `model.pt2`: a `torch.export` program; `torch.export.load("model.pt2").module()(images)`.
- `model.onnx` (needs the `onnx` extra): for onnxruntime and other ONNX runtimes, one
  self-contained file with the weights inside.

Both take a batch of normalized images, float32 of shape (N, 1, 28, 28) with any N, and return the
network's outputs: logits (N, 10) for the multiclass task (softmax gives probabilities), (N, 1) for
binary (a logit for sigmoid) and regression (the standardized value, see `mnist_ann.tasks`).
Normalized means `(pixels / 255 - 0.5) / 0.5` with white ink on black, as `mnist_ann.images.prepare`
and `mnist_ann.data.normalize` make them. `model.onnx` says so itself, for whoever deploys it: its metadata
(`onnxruntime`'s `get_modelmeta().custom_metadata_map`) holds the task, the class names and the input's
shape, scale and normalization.
"""

import importlib.util
import json
from pathlib import Path

import torch
from torch.export import Dim

from mnist_ann.checkpoints import check_checkpoint, resolve_checkpoint
from mnist_ann.data import MEAN, STD
from mnist_ann.errors import ConfigError
from mnist_ann.model import MNISTClassifier
from mnist_ann.network import IMAGE_SIDE


def export(ckpt_path: str = "best", output_dir: str = "export", onnx: bool = True) -> list[Path]:
    """Export a checkpoint's network.

    Args:
        ckpt_path: the checkpoint to export (loaded with weights_only=True); `best` or `last`: the
            newest such checkpoint under lightning_logs/.
        output_dir: folder for model.pt2 and model.onnx.
        onnx: also write model.onnx (needs `pip install 'mnist-ann[onnx]'`).
    """
    folder = Path(output_dir)
    check_output_dir(folder)
    if onnx and (missing := [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]):
        raise ConfigError(
            f"--onnx needs {' and '.join(missing)}: pip install 'mnist-ann[onnx]', or pass --onnx false "
            "(nothing was written)"
        )
    path = resolve_checkpoint(ckpt_path)
    check_checkpoint(path, unsafe_option=None)  # (export always loads weights only)
    model = MNISTClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    network = model.net.eval()
    example = torch.zeros(2, 1, IMAGE_SIDE, IMAGE_SIDE)
    batch = {0: Dim("batch", min=1)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--output_dir {folder}: cannot write there ({error.strerror})") from None

    program = torch.export.export(network, (example,), dynamic_shapes=(batch,))
    torch.export.save(program, folder / "model.pt2")
    written = [folder / "model.pt2"]
    if onnx:
        torch.onnx.export(
            network,
            (example,),
            folder / "model.onnx",
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=(batch,),
            dynamo=True,
            external_data=False,  # one self-contained file (the weights are 0.4 MB): copy it and it runs
        )
        describe_onnx(folder / "model.onnx", model)
        written.append(folder / "model.onnx")
    for path in written:
        print(f"wrote {path}")
    return written


def describe_onnx(path: Path, model: MNISTClassifier) -> None:
    """What the ONNX file's inputs and outputs mean, as its metadata."""
    import onnx

    exported = onnx.load(path)
    onnx.helper.set_model_props(
        exported,
        {
            "task": model.hparams.task,
            "class_names": json.dumps(model.class_names),
            "input_shape": f"N,1,{IMAGE_SIDE},{IMAGE_SIDE}",
            "input_ink": "white on black",
            "input_scale": "1/255",
            "input_mean": str(MEAN),
            "input_std": str(STD),
        },
    )
    onnx.save(exported, path)


def check_output_dir(folder: Path) -> None:
    """Refuse, before anything is written, an output folder that cannot be one."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output_dir {folder} is a file; name a folder (it is made if missing)")
    if blocking := next((parent for parent in folder.parents if parent.exists() and not parent.is_dir()), None):
        raise ConfigError(f"--output_dir {folder}: {blocking} is a file, so no folder can be made under it")
