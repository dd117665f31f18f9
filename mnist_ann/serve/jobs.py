"""The lab's jobs: one `mnist-ann` command at a time, in a process of its own, that never outlives the service.

A job is the command line itself (`python -m mnist_ann fit ...`): the same configs and code path as a user's,
an ordinary run folder, a crash that cannot take the service down, and the stop a user already has (SIGTERM,
after which the step in progress is saved). The service only starts it and reads the files it writes.

The job holds the read end of a pipe whose write end only the service's HTTP process holds (its lifeline,
`watch_lifeline`): however that process ends (stopped, killed, or gone with the service's main process), the
pipe closes and the job stops as SIGTERM stops it, its step saved. The main process, at its exit, waits for
the job it finds in its own pid file (`.lab-job.<pid>.pid`), so that two services in one folder never touch
each other's job.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fastapi import HTTPException

from mnist_ann.live import EVENTS
from mnist_ann.stopping import LIFELINE


def pid_file(root: Path, service: int) -> Path:
    return root / f".lab-job.{service}.pid"


class Job:
    """One `mnist-ann` command in a process of its own, its output kept in a file; the run it writes."""

    def __init__(self, kind: str, arguments: list[str], root: Path, service: int, run: Path | None = None) -> None:
        self.kind, self.root, self.run, self.service = kind, root, run, service
        self.stop_requested = False
        self.ended: tuple[str, str] | None = None  # once the process has exited: its state and what happened
        self.earlier = {folder.name for folder in root.glob("version_*")}
        self.output = tempfile.TemporaryFile("w+")  # noqa: SIM115 (read while the job runs, closed with the job)
        command = [sys.executable, "-m", "mnist_ann", kind, *arguments, "--trainer.enable_progress_bar=false"]
        self.command = ["mnist-ann", kind, *arguments]
        held_by_job, self.lifeline = os.pipe()
        try:
            self.process = subprocess.Popen(
                command,
                stdout=self.output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(held_by_job,),
                env={**os.environ, "PYTHONUNBUFFERED": "1", LIFELINE: str(held_by_job)},
            )
        finally:
            os.close(held_by_job)
        root.mkdir(parents=True, exist_ok=True)
        pid_file(root, service).write_text(str(self.process.pid))

    def watched(self) -> Path | None:
        """The run folder this job writes: for `fit`, the new one that appears."""
        if self.run is None and self.kind == "fit":
            new = [folder for folder in self.root.glob("version_*") if folder.name not in self.earlier]
            self.run = next((folder for folder in new if (folder / EVENTS).is_file()), None)
        return self.run

    def state(self) -> dict:
        if self.ended is None and (code := self.process.poll()) is not None:
            self.ended = self.end(code)
        state, message = self.ended or ("stopping" if self.stop_requested else "running", "")
        run = self.watched()
        return {
            "state": state,
            "kind": self.kind,
            "run": run.name if run else None,
            "command": shlex.join(self.command),
            "message": message,
        }

    def end(self, code: int) -> tuple[str, str]:
        """The job's state once its process exited with `code`, and what happened in words."""
        os.close(self.lifeline)
        pid_file(self.root, self.service).unlink(missing_ok=True)
        self.output.seek(0)
        printed = self.output.read()
        said = last_lines(printed)
        if code == 0:
            return "finished", outcome(printed) or said
        if self.stop_requested and code in (128 + signal.SIGTERM, -signal.SIGTERM):
            run = self.watched()
            if run is None or not (run / "checkpoints").is_dir():  # stopped before its first step
                if run is not None and run.name not in self.earlier:  # a folder that would list nothing
                    shutil.rmtree(run, ignore_errors=True)
                self.run = None
                return "stopped", "stopped before its first step: nothing was trained or kept"
            return "stopped", outcome(printed) or said
        if code < 0:
            return "failed", f"killed by {signal.Signals(-code).name}" + (f"; it said last: {said}" if said else "")
        return "failed", f"exited with status {code}" + (f": {said}" if said else "")

    def stop(self) -> None:
        self.stop_requested = True
        self.process.send_signal(signal.SIGTERM)


def outcome(printed: str) -> str:
    """What a command reported in words: a fit's best score and checkpoint, or where it stopped and how to resume;
    a test's accuracy. Empty when it said none of these."""
    if found := re.findall(r"^(Best .* kept as .*|stopped by .*)$", printed, re.MULTILINE):
        return found[-1]
    if found := re.findall(r"(test\w*)/acc[\s│]+([\d.]+)", printed):
        name, value = found[-1]
        on = "the test images" if name == "test" else f"the drawings in {name.removeprefix('test_')}/"
        return f"accuracy on {on}: {100 * float(value):.2f}%"
    return ""


def last_lines(printed: str, count: int = 2) -> str:
    """What a command said last: its summary, its resume hint, or its one error line (not the warnings)."""
    lines = [line.strip() for line in printed.splitlines()[-200:]]
    said = [line for line in lines if line and not re.search(r"\.py:\d+: ", line)]
    errors = [line for line in said if line.startswith("error:")]
    return "\n".join(errors[-1:] or said[-count:])


class Lab:
    """The lab's one job at a time; `service` is the service's main process, whose pid names the job's pid file."""

    def __init__(self, root: Path, service: int | None = None) -> None:
        self.root, self.service = root, service or os.getpid()
        self.job: Job | None = None
        self.lock = threading.Lock()
        for left in root.glob(".lab-job.*.pid"):  # left by a service that was killed: its job ended with it
            if not alive(int(left.name.split(".")[2])):
                left.unlink(missing_ok=True)

    def running(self) -> bool:
        return self.job is not None and self.job.process.poll() is None

    def start(self, kind: str, arguments: list[str], run: Path | None = None) -> dict:
        with self.lock:
            if self.running():
                raise HTTPException(
                    409,
                    f"a {self.job.kind} is in progress ({self.job.state()['run'] or 'starting'}): "
                    "stop it first, or wait for it to end",
                )
            self.job = Job(kind, arguments, self.root, self.service, run)
            return self.job.state()

    def stop(self) -> dict:
        with self.lock:
            if not self.running():
                raise HTTPException(409, "nothing is training: there is nothing to stop")
            self.job.stop()
            return self.job.state()

    def state(self) -> dict:
        return self.job.state() if self.job else {"state": "idle", "kind": None, "run": None, "message": ""}


def wait_for_job(root: Path, seconds: float = 60) -> None:
    """At the service's exit: the job its HTTP process left, if any, is stopping (its lifeline closed with that
    process); wait for it to save its step and end, so that no process is left."""
    path = pid_file(root, os.getpid())
    try:
        pid = int(path.read_text())
        if b"mnist_ann" not in Path(f"/proc/{pid}/cmdline").read_bytes():  # ended, and its pid taken by another
            raise ProcessLookupError
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return
    print(f"stopping the lab's training (process {pid}): its step is saved to last.ckpt", file=sys.stderr)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    path.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, ended but not yet reaped by its new parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
