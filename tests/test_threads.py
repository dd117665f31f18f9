"""The threads torch computes with: chosen by the work of a step (`mnist_ann.threads`), saved with the run, and
the same whatever else the machine runs, so that a seed gives the same weights on a busy machine too."""

import subprocess
import sys

import pytest
import torch
import yaml

from mnist_ann.threads import CORES, chosen_threads
from tests.helpers.commands import CONFIG, run_main


def test_auto_gives_the_recipe_one_thread_and_a_wide_network_every_core_it_is_allowed(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert chosen_threads("auto", 109_386, 64) == 1  # 784-128-64-10, batch 64
    assert chosen_threads("auto", 1_863_690, 256) == CORES  # the best recipes' 784-1024-1024-10, batch 256
    assert chosen_threads(3, 109_386, 64) == 3
    for allowed, threads in [("1", 1), ("1,1", 1), (str(CORES + 1), CORES), ("0", CORES), ("many", CORES)]:
        monkeypatch.setenv("OMP_NUM_THREADS", allowed)
        assert chosen_threads("auto", 1_863_690, 256) == threads, allowed


def test_every_command_runs_with_its_threads_setting_and_the_run_saves_it(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = ["--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run_main(monkeypatch, "fit", *data, "--trainer.max_epochs", "1", "--model.hidden_sizes", "[16]")
        assert torch.get_num_threads() == 1
        saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
        assert saved["threads"] == "auto"
        for command in ("validate", "test", "predict"):
            torch.set_num_threads(1)
            run_main(monkeypatch, command, *data, "--ckpt_path", "best", "--threads", "2")
            assert torch.get_num_threads() == 2, command
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_weights_beside_a_cpu_bound_process(synthetic_data_dir, tmp_path, monkeypatch):
    fit = ["fit", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--data.val_size=200"]
    fit += ["--trainer.max_epochs=1", "--trainer.limit_train_batches=8", "--trainer.enable_progress_bar=false"]
    (quiet := tmp_path / "quiet").mkdir()
    monkeypatch.chdir(quiet)
    run_main(monkeypatch, *fit)
    spin = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end: pass"
    burners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(CORES)]
    try:
        (busy := tmp_path / "busy").mkdir()
        monkeypatch.chdir(busy)
        run_main(monkeypatch, *fit)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    weights = [
        torch.load(folder / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)["state_dict"]
        for folder in (quiet, busy)
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
