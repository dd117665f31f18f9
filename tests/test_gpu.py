"""The GPU tier (`pytest -m gpu`): fit, test, predict, export, serve and the lab on `cuda`, augmentation on the
device, mixed precision. Skipped where torch sees no CUDA GPU; CONTRIBUTING.md says how to run them on one."""

import json

import pytest
import torch

from mnist_ann.model import MNISTClassifier
from tests.helpers.commands import CONFIG, run_main, table_values
from tests.helpers.service import get, post, start_server, stop_server
from tests.helpers.synthetic import bar_picture, png_base64
from tests.helpers.wait import wait_for

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here (the GPU tier runs where there is one)"),
]
ON_THE_GPU = ["--trainer.accelerator", "gpu", "--trainer.devices", "1"]
AUGMENTED = ["--data.augmentation.rotation=10", "--data.augmentation.elastic_alpha=20"]


@pytest.mark.parametrize("precision", ["32-true", "16-mixed", "bf16-mixed"])
def test_fit_test_predict_and_export_on_the_gpu(synthetic_data_dir, tmp_path, monkeypatch, capsys, precision):
    monkeypatch.chdir(tmp_path)
    data = ["--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    gpu = [*ON_THE_GPU, "--trainer.precision", precision]
    run_main(monkeypatch, "fit", *data, *gpu, *AUGMENTED, "--trainer.max_epochs", "3")  # distorted on the GPU
    capsys.readouterr()
    run_main(monkeypatch, "test", *data, *gpu, "--ckpt_path", "best")
    assert table_values(capsys.readouterr().out, "test/acc")[0] > 0.9
    bar_picture().save(tmp_path / "digit.png")
    run_main(monkeypatch, "predict", *gpu, "--ckpt_path", "best", "--data.predict_files", "digit.png")
    assert "digit.png" in capsys.readouterr().out
    run_main(monkeypatch, "export", "--ckpt_path", "best", "--output_dir", "export")
    assert {"model.pt2", "model.onnx"} <= {path.name for path in (tmp_path / "export").iterdir()}
    best = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    model = MNISTClassifier.load_from_checkpoint(best, map_location="cpu", weights_only=True)  # usable without one
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_serve_answers_and_the_lab_trains_on_the_gpu(trained_checkpoint, synthetic_data_dir, tmp_path):
    process, base = start_server(trained_checkpoint, cwd=tmp_path, env={"MNIST_ANN_DATA_DIR": str(synthetic_data_dir)})
    try:
        body = json.dumps({"image": png_base64(bar_picture())}).encode()
        status, answer = post(f"{base}/predict", body)
        assert status == 200 and len(answer["probabilities"]) == 10
        settings = {"hidden_sizes": [32], "epochs": 1, "val_size": 200}
        assert post(f"{base}/lab/fit", json.dumps(settings).encode())[0] == 200
        job = wait_for(lambda: (job := json.loads(get(f"{base}/lab"))["job"])["state"] != "running" and job, 300)
        assert job["state"] == "finished", job
    finally:
        stop_server(process)
