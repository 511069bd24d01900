"""Multi-GPU training: `accelerate launch` as a supervised child of the job handler.

The handler writes the TrainSpec to a file and starts `accelerate launch --config_file … -m
services.trainer.launch SPEC EVENTS SUPERVISOR_PID`. The main training process appends one JSON
line per event (step, checkpoint, validation, done) to EVENTS; the handler tails that file and
replays each event to its own TrainEvents (which upload to the store), checks for cancellation
between polls, and kills the whole process group on cancel or on any error. Children exit by
themselves when the supervising worker dies (e.g. SIGKILL), so a redelivered job never competes
with orphans for the GPUs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from services.trainer.core import StepReport, TrainEvents, TrainOutcome, TrainSpec, train
from services.trainer.settings import REPO_ROOT

POLL_INTERVAL_S = 0.5
STOP_GRACE_S = 30.0


class SupervisorGoneError(RuntimeError):
    """The job handler that launched this run is gone; stop instead of training unobserved."""


class JsonlEvents:
    """Child side: append each event as a JSON line (flushed, so the supervisor sees it at once)."""

    def __init__(self, path: Path, supervisor_pid: int) -> None:
        self.path, self.supervisor_pid = path, supervisor_pid

    def _write(self, event: str, **data: Any) -> None:
        try:
            os.kill(self.supervisor_pid, 0)
        except ProcessLookupError:
            raise SupervisorGoneError(f"supervising process {self.supervisor_pid} exited") from None
        with self.path.open("a") as handle:
            handle.write(json.dumps({"event": event, **data}, default=str) + "\n")
            handle.flush()

    def on_step(self, report: StepReport) -> None:
        self._write("step", **asdict(report))

    def on_checkpoint(self, step: int, path: Path) -> None:
        self._write("checkpoint", step=step, path=str(path))

    def on_validation(self, step: int, path: Path) -> None:
        self._write("validation", step=step, path=str(path))

    def done(self, outcome: TrainOutcome) -> None:
        self._write("done", outcome=outcome.model_dump(mode="json"))


class EventReplay:
    """Supervisor side: read the lines appended since the last call and hand them to `events`."""

    def __init__(self, path: Path, events: TrainEvents) -> None:
        self.path, self.events, self.offset = path, events, 0
        self.outcome: TrainOutcome | None = None

    def pump(self) -> None:
        if not self.path.exists():
            return
        with self.path.open() as handle:
            handle.seek(self.offset)
            while (line := handle.readline()).endswith("\n"):  # a half-written last line waits for the next pump
                self.offset = handle.tell()
                self._dispatch(json.loads(line))

    def _dispatch(self, record: dict[str, Any]) -> None:
        event = record.pop("event")
        if event == "step":
            self.events.on_step(StepReport(**record))
        elif event == "checkpoint":
            self.events.on_checkpoint(record["step"], Path(record["path"]))
        elif event == "validation":
            self.events.on_validation(record["step"], Path(record["path"]))
        elif event == "done":
            self.outcome = TrainOutcome.model_validate(record["outcome"])


def accelerate_command(config_file: Path, num_processes: int, spec_file: Path, events_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file),
        "--num_processes",
        str(num_processes),
        "-m",
        "services.trainer.launch",
        str(spec_file),
        str(events_file),
        str(os.getpid()),
    ]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_distributed(
    spec: TrainSpec,
    events: TrainEvents,
    config_file: Path,
    num_processes: int,
    check_canceled: Callable[[], None],
) -> TrainOutcome:
    """Run `spec` under `accelerate launch`; raise with the log's tail if the launch fails."""
    launch_dir = spec.work_dir / "launch"
    launch_dir.mkdir(parents=True, exist_ok=True)
    spec_file, events_file, log_file = (launch_dir / name for name in ("spec.json", "events.jsonl", "launch.log"))
    spec_file.write_text(spec.model_dump_json())
    events_file.unlink(missing_ok=True)
    replay = EventReplay(events_file, events)
    command = accelerate_command(config_file, num_processes, spec_file, events_file)
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while process.poll() is None:
                replay.pump()
                check_canceled()
                time.sleep(POLL_INTERVAL_S)
            replay.pump()
        finally:
            _stop(process)
    if process.returncode != 0 or replay.outcome is None:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"accelerate launch exited with code {process.returncode}:\n{tail}")
    return replay.outcome


def main(argv: list[str]) -> None:
    spec_file, events_file, supervisor_pid = Path(argv[0]), Path(argv[1]), int(argv[2])
    events = JsonlEvents(events_file, supervisor_pid)
    outcome = train(TrainSpec.model_validate_json(spec_file.read_text()), events)
    if int(os.environ.get("RANK", "0")) == 0:
        events.done(outcome)


if __name__ == "__main__":
    main(sys.argv[1:])
