"""Multi-process training and evaluation on CPU with Lightning's DDP (gloo), as real subprocesses."""

import pytest

from tests.helpers.accuracy import single_process_test_accuracy
from tests.helpers.commands import CONFIG, REPO, free_port, run_cli, table_values, unexpected_warnings
from tests.helpers.synthetic import write_mnist

DDP_CONFIG = str(REPO / "configs" / "ddp.yaml")


def run_ddp(args: list[str], cwd) -> str:
    """One CLI run on CPU processes (all of them gone afterwards, even when it hangs); its output."""
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    result = run_cli(*args, "--trainer.accelerator", "cpu", cwd=cwd, env=env, timeout=240)
    output = result.stdout + result.stderr
    assert unexpected_warnings(output) == []
    return output


@pytest.mark.slow
@pytest.mark.parametrize(("processes", "test_size"), [(2, 300), (3, 301)])
def test_ddp_fit_and_test_report_the_exact_single_process_accuracy(tmp_path, processes, test_size):
    # 301: not divisible by 3. Noisy enough that the model makes some mistakes to count.
    data_dir = write_mnist(tmp_path / "data", train_size=1201, test_size=test_size, noise=150)
    common = ["--config", CONFIG, "--config", DDP_CONFIG, "--data.data_dir", str(data_dir), "--data.val_size", "200"]
    common += ["--trainer.devices", str(processes)]
    run_ddp(["fit", *common, "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "5"], tmp_path)
    output = run_ddp(["test", *common, "--ckpt_path", "best"], tmp_path)

    [reported] = table_values(output, "test/acc")
    checkpoint = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    assert reported == single_process_test_accuracy(checkpoint, data_dir)
    assert 0.5 < reported < 1  # trained, and the comparison is not trivially 0 or 1
