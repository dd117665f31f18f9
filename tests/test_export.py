"""`export`: files that run without this package and give the checkpoint's outputs."""

import json
import shutil
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from mnist_ann.data import MNISTDataModule, normalize
from mnist_ann.export import export
from mnist_ann.idx import load_split
from mnist_ann.model import MNISTClassifier
from tests.helpers.accuracy import fit
from tests.helpers.commands import main_error, run_main


def test_exported_onnx_and_pt2_give_the_checkpoints_logits(trained_checkpoint, synthetic_data_dir, tmp_path):
    assert_exports_give_the_logits(trained_checkpoint, synthetic_data_dir, tmp_path)


def test_a_batch_normalized_network_exports_with_its_running_statistics(synthetic_data_dir, tmp_path):
    checkpoint = tmp_path / "batch-norm.ckpt"
    fit(MNISTDataModule(synthetic_data_dir, val_size=200), epochs=1, checkpoint=checkpoint, batch_norm=True)
    assert_exports_give_the_logits(checkpoint, synthetic_data_dir, tmp_path)


def assert_exports_give_the_logits(checkpoint, data_dir, folder) -> None:
    written = export(str(checkpoint), output_dir=str(folder))
    assert sorted(path.name for path in written) == ["model.onnx", "model.pt2"]
    images = normalize(load_split(data_dir, train=False)[0][:37])  # an odd batch size: dynamic
    with torch.no_grad():
        expected = MNISTClassifier.load_from_checkpoint(checkpoint, weights_only=True).eval()(images).numpy()

    program = torch.export.load(folder / "model.pt2").module()
    np.testing.assert_allclose(program(images).detach().numpy(), expected, atol=1e-5, rtol=0)
    session = onnxruntime.InferenceSession(folder / "model.onnx", providers=["CPUExecutionProvider"])
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


def test_the_onnx_file_alone_is_the_whole_model(trained_checkpoint, synthetic_data_dir, tmp_path):
    export(str(trained_checkpoint), output_dir=str(tmp_path / "export"))
    assert sorted(path.name for path in (tmp_path / "export").iterdir()) == ["model.onnx", "model.pt2"]
    deployed = tmp_path / "elsewhere"
    deployed.mkdir()
    shutil.copy(tmp_path / "export" / "model.onnx", deployed)  # what a user copies to deploy it
    images = normalize(load_split(synthetic_data_dir, train=False)[0][:5])
    session = onnxruntime.InferenceSession(deployed / "model.onnx", providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = MNISTClassifier.load_from_checkpoint(trained_checkpoint, weights_only=True).eval()(images).numpy()
    np.testing.assert_allclose(session.run(["logits"], {"images": images.numpy()})[0], expected, atol=1e-5, rtol=0)
    said = session.get_modelmeta().custom_metadata_map  # and what its input and output mean
    assert json.loads(said["class_names"]) == [str(digit) for digit in range(10)] and said["task"] == "multiclass"
    assert (said["input_shape"], said["input_scale"], said["input_mean"], said["input_std"]) == (
        "N,1,28,28",
        "1/255",
        "0.5",
        "0.5",
    )


@pytest.mark.parametrize(
    ("output_dir", "message"),
    [("afile", "--output_dir {tmp}/afile is a file"), ("afile/sub", "{tmp}/afile is a file, so no folder can be made")],
)
def test_an_output_folder_that_cannot_be_one_is_refused(trained_checkpoint, tmp_path, monkeypatch, output_dir, message):
    (tmp_path / "afile").write_text("notes")
    args = ["export", "--ckpt_path", str(trained_checkpoint), "--output_dir", str(tmp_path / output_dir)]
    assert message.format(tmp=tmp_path) in main_error(monkeypatch, *args)
    assert (tmp_path / "afile").read_text() == "notes" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_without_the_onnx_extra_nothing_is_written(trained_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # how Python marks a module that cannot be imported
    args = ["export", "--ckpt_path", str(trained_checkpoint), "--output_dir", str(tmp_path / "out")]
    assert "--onnx needs onnxscript: pip install 'mnist-ann[onnx]'" in main_error(monkeypatch, *args)
    assert not (tmp_path / "out").exists()
