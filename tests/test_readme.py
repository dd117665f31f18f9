"""The README's and the docs' commands, run as written, in their order, in a fresh folder holding what a
clone holds (configs/, examples/), on the real MNIST; what the pages say they print is checked.

Every command of the pages is accounted for: it runs, runs shortened (named in SHORTENED, with why), cannot
run here (NOT_HERE, with why), runs in the test that holds what it does (ELSEWHERE), or ran already (the same
line on an earlier page; a server is each page's own). A command added to a page and to none of these runs as
written.
`mnist-ann` lines go through the real entry point in this process (the installed script calls nothing else;
tests/test_packaging.py runs it), servers and shell lines (curl, $(...)) as processes.
"""

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.commands import REPO, finish, free_port, run_main, start_cli
from tests.helpers.service import stop_server, wait_for_answer

PAGES = ["README.md", "docs/reference.md", "docs/monitoring.md", "docs/serve.md", "docs/tune.md"]
NOT_HERE = {  # a part of the command: why it does not run here
    "python3 -m venv": "installs the project: CI runs the test line itself, and the main line's fit and test run here",
    "lightning_logs/version_3": "needs drawings collected on the page (my_digits/): tests/test_handwriting.py",
}
ELSEWHERE = {  # a pattern of the command: the test that runs it as written (on the synthetic data)
    r"--config configs/(fast|best)\.yaml": "tests/test_levers.py::test_a_best_recipe_runs_as_users_run_it_...",
}
SHORTENED = {  # a pattern of the command: what is added, so that the suite stays short
    # 40 trials of 5 epochs: about 9 minutes (the limit is kept in the best trial's config: tune/tune/best.yaml)
    r"configs/tune\.yaml": "--n_trials 2 --tune.epochs 1 --trainer.limit_train_batches 10",
    # its network may be ten times the recipe's, trained adversarially (three passes a step)
    r"tune/tune/best\.yaml": "--trainer.max_epochs 1 --trainer.limit_train_batches 10",
    # The README's `mnist-ann fit` with its config named: the README's own runs the whole recipe.
    r"^mnist-ann fit --config configs/default\.yaml$": "--trainer.max_epochs 1 --trainer.limit_train_batches 100",
}
SERVERS = ("mnist-ann serve", "tensorboard ", "optuna-dashboard ")
SHELL = set("|&;<>$`")  # a command with any of these runs in bash; any other `mnist-ann` command in this process


def commands(page: Path) -> list[tuple[str, list[str]]]:
    """The page's shell commands, in order, each with the output lines the page shows under it ($ prompts)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        lines = block.replace("\\\n", " ").splitlines()
        prompted = any(line.startswith("$ ") for line in lines)
        for line in lines:
            if prompted and not line.startswith("$ "):
                found[-1][1].append(line)
            elif line.strip():
                found.append((" ".join(re.sub(r"\s+#\s.*$", "", line.removeprefix("$ ")).split()), []))
    return found


@pytest.fixture
def clone(tmp_path, real_data_dir):
    shutil.copytree(REPO / "configs", tmp_path / "configs", symlinks=False)
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    bin_dir = Path(sys.executable).parent  # mnist-ann, tensorboard and optuna-dashboard, as installed
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    return tmp_path, {**os.environ, "PATH": path, "MNIST_ANN_DATA_DIR": str(real_data_dir)}


@pytest.mark.slow
def test_every_command_of_the_readme_and_the_docs_runs_as_written(clone, monkeypatch, capfd, caplog):
    folder, env = clone
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MNIST_ANN_DATA_DIR", env["MNIST_ANN_DATA_DIR"])
    ran, skipped = [], []
    for page in PAGES:
        servers = []
        try:
            for command, shown in commands(REPO / page):
                if reason := next((why for part, why in NOT_HERE.items() if part in command), None):
                    skipped.append((command, reason))
                    continue
                if held := next((test for pattern, test in ELSEWHERE.items() if re.search(pattern, command)), None):
                    skipped.append((command, held))
                    continue
                extra = " ".join(more for pattern, more in SHORTENED.items() if re.search(pattern, command))
                if command.startswith(SERVERS):  # a page's own: `--ckpt_path best` is the newest run when it starts
                    servers.append(start(command, extra, folder, env))
                    continue
                if command in ran and not shown:  # a page repeats a command another ran: it ran as written
                    skipped.append((command, "ran above, as another page writes it"))
                    continue
                if servers and "127.0.0.1:8000" in command:
                    process, port, url = servers[-1]
                    wait_for_answer(process, url)
                    command = command.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
                if command.startswith("mnist-ann ") and not SHELL.intersection(command):
                    result = run_here(command, extra, monkeypatch, capfd, caplog)
                else:
                    result = run(command, extra, folder, env)
                check(page, command, shown, result)
                ran.append(command)
            for process, _, url in servers:  # each server the page started answers
                wait_for_answer(process, url)
        finally:
            for process, _, _ in servers:
                stop_server(process)
    print("\n".join(["not run here:", *(f"  {command}  ({why})" for command, why in skipped)]))
    assert len(ran) >= 15  # the pages were read: their commands found


def run_here(command: str, extra: str, monkeypatch, capfd, caplog) -> subprocess.CompletedProcess:
    """`mnist-ann ...` through the real entry point in this process: what a fresh process would parse and print
    (Lightning's messages through logging, as its handler prints them in a fresh process)."""
    full = shlex.split(f"{command} {extra}")
    capfd.readouterr()
    caplog.clear()
    try:
        with caplog.at_level(logging.INFO):
            run_main(monkeypatch, *full[1:])
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"{' '.join(full)} exited: {exit_.code}\n{capfd.readouterr().err[-3000:]}"
    printed = capfd.readouterr()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    return subprocess.CompletedProcess(full, 0, printed.out, f"{printed.err}\n{logged}")


def run(command: str, extra: str, folder: Path, env: dict) -> subprocess.CompletedProcess:
    full = f"{command} {extra}".strip()
    result = finish(start_cli(cwd=folder, env=env, command=("bash", "-c", full)), timeout=600)
    assert result.returncode == 0, (
        f"{full} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
    return result


def start(command: str, extra: str, folder: Path, env: dict) -> tuple[subprocess.Popen, int, str]:
    """A server the page starts, on a free port of 127.0.0.1: (process, port, the URL it answers at). It starts
    while the page's next commands run; the command that uses it, or the page's end, waits for its answer."""
    port = free_port()
    options = f"--port {port}" + ("" if command.startswith("mnist-ann") else " --host 127.0.0.1")
    process = start_cli(cwd=folder, env=env, command=("bash", "-c", f"exec {command} {extra} {options}"))
    return process, port, f"http://127.0.0.1:{port}/" + ("health" if command.startswith("mnist-ann") else "")


def check(page: str, command: str, shown: list[str], result: subprocess.CompletedProcess) -> None:
    """What the page says the command prints."""
    printed = result.stdout + result.stderr
    if shown:  # a $ prompt's output: the answer's class where the page abridges it, else word for word
        [line] = shown
        if expected := re.match(r'\{"class":(\d+)', line):
            assert json.loads(result.stdout)["class"] == int(expected.group(1))
        else:
            assert result.stdout.strip() == line.strip()
    if page == "README.md" and command == "mnist-ann fit":
        assert re.search(r"Best val/acc 97\.\d\d% in epoch \d \(of 0-9\), kept as lightning_logs/version_0/", printed)
        test_it = "Test it on the test images: mnist-ann test --ckpt_path lightning_logs/version_0/checkpoints/best"
        assert test_it in printed
    if page == "docs/reference.md" and command.startswith("mnist-ann tune"):  # trained as docs/tune.md trains it
        [train] = [line for line, _ in commands(REPO / "docs" / "tune.md") if line.startswith("mnist-ann fit")]
        assert f"train it with: {train}\n" in printed
    if page == "README.md" and command.startswith("mnist-ann test --ckpt_path best"):
        accuracy = float(re.search(r"test/acc\s+([0-9.]+)", printed).group(1))
        assert 0.971 <= accuracy <= 0.978  # "97.1-97.8%, by seed and by machine"
    if "--data.predict_files examples/my_digit.png" in command:
        assert re.search(r"examples/my_digit\.png\s+7\s", printed)


def test_the_korean_readme_holds_the_english_readmes_commands_word_for_word():
    """README.ko.md's commands are README.md's (the test above runs them), so that both pages say the same."""
    english = [command for command, _ in commands(REPO / "README.md")]
    korean = [command for command, _ in commands(REPO / "README.ko.md")]
    assert len(korean) >= 7 and all(command in english for command in korean)
