"""`export`: files that run without this package and give the checkpoint's outputs."""

import numpy as np
import onnxruntime
import torch

from mnist_ann.data import normalize
from mnist_ann.export import export
from mnist_ann.idx import load_split
from mnist_ann.model import MNISTClassifier
from tests.conftest import run_main


def test_exported_onnx_and_pt2_give_the_checkpoints_logits(trained_checkpoint, synthetic_data_dir, tmp_path):
    written = export(str(trained_checkpoint), output_dir=str(tmp_path))
    assert sorted(path.name for path in written) == ["model.onnx", "model.pt2"]
    images = normalize(load_split(synthetic_data_dir, train=False)[0][:37])  # an odd batch size: dynamic
    with torch.no_grad():
        expected = MNISTClassifier.load_from_checkpoint(trained_checkpoint, weights_only=True).eval()(images).numpy()

    program = torch.export.load(tmp_path / "model.pt2").module()
    np.testing.assert_allclose(program(images).detach().numpy(), expected, atol=1e-5, rtol=0)
    session = onnxruntime.InferenceSession(tmp_path / "model.onnx", providers=["CPUExecutionProvider"])
    [logits] = session.run(["logits"], {"images": images.numpy()})
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)


def test_export_command_line(trained_checkpoint, tmp_path, monkeypatch, capsys):
    run_main(
        monkeypatch,
        "export",
        "--ckpt_path",
        str(trained_checkpoint),
        "--output_dir",
        str(tmp_path / "out"),
        "--onnx",
        "false",
    )
    assert f"wrote {tmp_path / 'out' / 'model.pt2'}" in capsys.readouterr().out
    assert not (tmp_path / "out" / "model.onnx").exists()
