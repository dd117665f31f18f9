"""Every command once, as a user types it, on tiny synthetic data: `pytest -m smoke` says in seconds that nothing
is broken end to end (the other test files say how well each part works)."""

import json
import logging
import os
import signal
import urllib.request

import pytest
import yaml

from tests.helpers.commands import finish, free_port, run_main, start_cli
from tests.helpers.service import wait_for_answer
from tests.helpers.synthetic import bar_picture, png_base64, write_mnist

pytestmark = pytest.mark.smoke


def tiny(folder) -> list[str]:
    return ["--data.data_dir", str(folder / "data"), "--data.val_size", "100", "--trainer.log_every_n_steps", "2"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A working folder with tiny data (300 training, 100 test images) and a run fitted with no --config."""
    folder = tmp_path_factory.mktemp("smoke")
    write_mnist(folder / "data", train_size=300, test_size=100)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(folder)
        run_main(monkeypatch, "fit", *tiny(folder), "--trainer.max_epochs", "1")
    return folder


@pytest.fixture(scope="module")
def server(folder):
    """`serve` of the run, started before the other commands run, so that its start-up overlaps them."""
    port = free_port()
    process = start_cli("serve", "--ckpt_path", "best", "--port", str(port), cwd=folder)
    yield process, f"http://127.0.0.1:{port}"
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    finish(process, timeout=60)


def test_fit_with_no_config_trains_the_recipe(folder, server):
    saved = yaml.safe_load((folder / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["hidden_sizes"] == [128, 64] and saved["model"]["optimizer"]["init_args"]["lr"] == 0.01
    assert (folder / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.parametrize(("command", "prints"), [("validate", "val/acc"), ("test", "test/acc"), ("predict", "file")])
def test_evaluating_commands_run_on_the_best_checkpoint(folder, monkeypatch, capsys, caplog, command, prints):
    monkeypatch.chdir(folder)
    with caplog.at_level(logging.INFO):
        run_main(monkeypatch, command, *tiny(folder), "--ckpt_path", "best")
    assert prints in capsys.readouterr().out
    assert "--ckpt_path best -> lightning_logs/version_0/checkpoints/best.ckpt" in caplog.messages


def test_export_writes_the_model(folder, monkeypatch):
    monkeypatch.chdir(folder)
    run_main(monkeypatch, "export", "--ckpt_path", "best", "--output_dir", "export", "--onnx", "false")
    assert (folder / "export" / "model.pt2").is_file()


def test_tune_runs_a_one_trial_study(folder, monkeypatch):
    monkeypatch.chdir(folder)
    space = {"tune": {"n_trials": 1, "epochs": 1, "space": {"model.hidden_sizes": {"choices": [[16]]}}}}
    (folder / "search.yaml").write_text(yaml.safe_dump(space))
    run_main(monkeypatch, "tune", "--config", "search.yaml", *tiny(folder))
    assert (folder / "tune" / "tune" / "best.yaml").is_file()


def test_serve_answers_a_picture_and_stops_on_ctrl_c(server):
    """Ctrl-C in a terminal: SIGINT to every process of the group (SIGTERM under load: test_serve.py)."""
    body = json.dumps({"image": png_base64(bar_picture())}).encode()
    process, base = server
    try:
        wait_for_answer(process, f"{base}/health")
        request = urllib.request.Request(f"{base}/predict", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert set(json.loads(response.read())) >= {"class", "name", "probabilities"}
    finally:
        os.killpg(os.getpgid(process.pid), signal.SIGINT)
        stopped = finish(process, timeout=60)
        assert stopped.returncode == 0 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
