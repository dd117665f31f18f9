"""The multi-node launches of docs/distributed.md, run as the page writes them, on one host: 2 "nodes" x 1 CPU process.

The command lines are read from that page itself, so that they cannot drift from what is tested; only
host names, ports and process counts are replaced. `torchrun` is started twice, once per node rank, as
on two machines; for SLURM, whose `srun` is not here, each process gets the environment `srun` gives
its tasks. Either way the reported test accuracy must equal one process's on the same checkpoint,
exactly, and only rank 0 may write files.
"""

import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.helpers.accuracy import single_process_test_accuracy
from tests.helpers.commands import REPO, finish, free_port, start_cli, table_values, unexpected_warnings
from tests.helpers.synthetic import write_mnist

NODES = 2


def readme_commands(first_word: str) -> dict[str, list[str]]:
    """The page's command lines that start with `first_word`, by subcommand, as argument lists."""
    text = (REPO / "docs" / "distributed.md").read_text().replace("\\\n", " ")
    commands = [shlex.split(line) for line in text.splitlines() if line.startswith(f"{first_word} ")]
    return {command[command.index("mnist_ann") + 1]: command for command in commands}


def on_this_host(command: list[str], data_dir, port: str, node_rank: int) -> list[str]:
    """A line of the page for 2 nodes of 1 CPU process each on this host, on the synthetic data."""
    replaced = {"HOST0": "127.0.0.1", "29500": port}
    after = {"--nproc_per_node": "1", "--trainer.devices": "1", "--node_rank": str(node_rank)}
    args = [replaced.get(arg, arg) for arg in command]
    args = [after.get(before, arg) for before, arg in zip(["", *args[:-1]], args, strict=True)]
    args = [str(REPO / arg) if arg.startswith("configs/") else arg for arg in args]
    assert args[args.index("--trainer.num_nodes") + 1] == str(NODES)
    extra = ["--trainer.accelerator", "cpu", "--data.data_dir", str(data_dir), "--data.val_size", "200"]
    if "fit" in args:
        extra += ["--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "5"]
    return args + extra


def slurm_task(rank: int, port: str) -> dict:
    """What `srun` sets for task `rank` of a job of 2 nodes x 1 task: what Lightning's SLURMEnvironment reads."""
    return {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "mnist-ann",
        "SLURM_NNODES": str(NODES),
        "SLURM_NTASKS": str(NODES),
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": str(rank),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": port,
    }


def launch(per_node: list[tuple[list[str], dict]], cwd, timeout: float = 240) -> list[str]:
    """Start every node's process at once, as on several machines; their outputs, once all have exited 0."""
    processes = [start_cli(*command[1:], cwd=cwd, env=env, command=command[:1]) for command, env in per_node]
    results = [finish(process, timeout) for process in processes]
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    return [result.stdout + result.stderr for result in results]


def check_run(workdir, outputs: list[str], data_dir) -> None:
    """One process per node with its node's rank, exact accuracy, files from rank 0 only, no needless warning."""
    for rank, output in enumerate(outputs):
        assert re.findall(r"GLOBAL_RANK: (\d+), MEMBER: \d+/(\d+)", output) == [(str(rank), str(NODES))]
        assert unexpected_warnings(output) == []
    [reported] = {value for output in outputs for value in table_values(output, "test/acc")}
    checkpoint = workdir / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    assert reported == single_process_test_accuracy(checkpoint, data_dir)
    assert 0.5 < reported < 1  # trained, and the comparison is not trivially 0 or 1
    assert [path.name for path in (workdir / "lightning_logs").iterdir()] == ["version_0"]
    assert sorted(path.name for path in checkpoint.parent.iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.fixture
def noisy_data(tmp_path) -> Path:
    return write_mnist(tmp_path / "data", train_size=1201, test_size=300, noise=150)


@pytest.mark.slow
def test_torchrun_on_two_nodes_as_the_readme_writes_it(noisy_data, tmp_path):
    commands = readme_commands("torchrun")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    outputs = {}
    for subcommand in ("fit", "test"):
        port = str(free_port())
        per_node = [
            ([torchrun, *on_this_host(commands[subcommand], noisy_data, port, rank)[1:]], {}) for rank in range(NODES)
        ]
        outputs[subcommand] = launch(per_node, tmp_path)
    check_run(tmp_path, outputs["test"], noisy_data)


@pytest.mark.slow
def test_slurm_tasks_on_two_nodes_as_the_readme_writes_them(noisy_data, tmp_path):
    commands = readme_commands("srun")
    outputs = {}
    for subcommand in ("fit", "test"):
        port = str(free_port())
        command = on_this_host(commands[subcommand], noisy_data, port, 0)
        assert command[:2] == ["srun", "python"]
        per_node = [([sys.executable, *command[2:]], slurm_task(rank, port)) for rank in range(NODES)]
        outputs[subcommand] = launch(per_node, tmp_path)
    # Lightning found SLURM: it sets up SLURM's requeue-on-preemption signal handling only then.
    assert all("SLURM auto-requeueing enabled" in output for output in outputs["fit"])
    check_run(tmp_path, outputs["test"], noisy_data)
