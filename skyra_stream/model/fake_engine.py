"""Stand-ins for the engine and the output, for tests of everything around them.

Shipped with the package, the way `structlog.testing` is, so that users' own tests and ours
use the same fakes:

- `FakeEngine` implements `model.engine.Engine` without a model: deterministic answers in the
  contract's exact form, configurable latency and per-request failures, a gate that holds
  answers until the test releases them (work in flight without racing the clock), and a
  `kill()` that behaves as a dead vLLM engine does.

`SKYRA_ENGINE=fake` runs a whole worker on a `FakeEngine` (with `SKYRA_FAKE_ENGINE_HOLD_FILE`
as the gate), for tests of the Kafka plumbing that must not wait a minute for vLLM to load.
Its verdicts name the model `fake-engine`: they are never detections.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skyra_stream.errors import EngineDeadError, EngineRequestError
from skyra_stream.model.engine import FAKE_MODEL_NAME, EngineRequest, EngineResult, settle

__all__ = ["FAKE_MODEL_NAME", "FakeEngine", "fake_answer"]


def fake_answer(request: EngineRequest) -> tuple[str, float]:
    """A contract-shaped answer and P(fake), the same for the same request id: about half
    the ids get `Fake` with one grounded artifact inside the sampled span, the rest `Real`."""
    digest = hashlib.sha256(request.request_id.encode()).digest()
    first = request.timestamps_s[0] if request.timestamps_s else 0.0
    last = request.timestamps_s[-1] if request.timestamps_s else 0.0
    if digest[0] % 2:
        text = (
            f"<think>{len(request.frames)} frames. The surface of the wall "
            f"<type>Texture Jittering</type> in <t>[{first:.2f}, {last:.2f}]</t> at "
            "<bbox>[0.1, 0.2, 0.5, 0.6]</bbox> shimmers between frames.</think>\n"
            "<answer>Fake</answer>"
        )
        return text, 0.9
    text = (
        f"<think>{len(request.frames)} frames, nothing out of place.</think>\n<answer>Real</answer>"
    )
    return text, 0.1


@dataclass
class _Pending:
    request: EngineRequest
    future: concurrent.futures.Future[EngineResult]
    submitted: float
    due: float


class FakeEngine:
    """An `model.engine.Engine` that answers from `answer` instead of a model.

    Answers come from a background thread, never from inside `submit`, as with the real
    engine. `fail(request)` returning a message makes that request fail with
    `EngineRequestError`; `finish(request)` is the answer's finish reason (`model.engine.LENGTH`
    or `DEADLINE` for an answer cut as vLLM's would be). While `hold()` is in effect (or
    `hold_file` exists) nothing is answered; `release()` lets everything through. With
    `journal`, every submitted request's id is appended to that file, which outlives the
    process (the fleet campaign counts analyses per event across workers it kills).
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        answer: Callable[[EngineRequest], tuple[str, float]] = fake_answer,
        fail: Callable[[EngineRequest], str | None] | None = None,
        hold_file: Path | None = None,
        journal: Path | None = None,
        finish: Callable[[EngineRequest], str] = lambda _request: "stop",
    ) -> None:
        self.latency_s = latency_s
        self.finish = finish
        self.answer = answer
        self.fail = fail
        self.hold_file = hold_file
        self.journal = journal
        # Ids only: a fake that kept every request's frames would grow by ~5 MiB a video.
        self.submitted: list[str] = []
        self.answered = 0
        self.cancelled = 0
        self.peak_in_flight = 0
        self._held = False
        self._dead: BaseException | None = None
        self._started = False
        self._closing = False
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="fake-engine", daemon=True)

    # -- model.engine.Engine -----------------------------------------------------------------

    def start(self) -> FakeEngine:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ready(self) -> bool:
        return self._started and self._dead is None

    @property
    def dead(self) -> BaseException | None:
        return self._dead

    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._queue)

    def submit(self, request: EngineRequest) -> concurrent.futures.Future[EngineResult]:
        if not self._started:
            raise RuntimeError("engine not started")
        future: concurrent.futures.Future[EngineResult] = concurrent.futures.Future()
        if self._dead is not None:
            future.set_exception(EngineDeadError(f"engine is dead: {self._dead}"))
            return future
        now = time.monotonic()
        pending = _Pending(request, future, now, now + self.latency_s)
        if self.journal is not None:
            # One short append per request: whole lines, even from several processes.
            with self.journal.open("a") as journal:
                journal.write(request.request_id + "\n")
        with self._cond:
            self.submitted.append(request.request_id)
            self._queue.append(pending)
            self.peak_in_flight = max(self.peak_in_flight, len(self._queue))
            self._cond.notify_all()
        future.add_done_callback(self._forget)  # not a closure over `pending`: no cycle
        return future

    # -- control ----------------------------------------------------------------------------

    def hold(self) -> None:
        """Keep every answer back until `release()`: work stays in flight for as long as a
        test needs it there."""
        with self._cond:
            self._held = True

    def release(self, where: Callable[[EngineRequest], bool] | None = None) -> int:
        """Lift the hold; with `where`, answer only the held requests it selects, now, and
        keep holding the rest (to finish work out of order). Returns how many were let go."""
        with self._cond:
            if where is None:
                self._held = False
                self._cond.notify_all()
                return len(self._queue)
            chosen = [p for p in self._queue if where(p.request)]
            for pending in chosen:
                self._queue.remove(pending)
            self._cond.notify_all()
        for pending in chosen:
            self._respond(pending)
        return len(chosen)

    def wait_in_flight(self, n: int, timeout_s: float = 10.0) -> None:
        """Block until at least `n` requests are inside the engine."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._queue) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._queue)} of {n} requests in flight")
                self._cond.wait(left)

    def kill(self, reason: str = "engine core process died") -> None:
        """Die as vLLM does: every request in flight and every later one fails with
        EngineDeadError, and `dead` says why."""
        with self._cond:
            self._dead = RuntimeError(reason)
            queued, self._queue = self._queue, []
            self._cond.notify_all()
        for pending in queued:
            settle(pending.future, EngineDeadError(reason))

    # -- the answering thread ---------------------------------------------------------------

    def _open(self) -> bool:
        return not self._held and not (self.hold_file is not None and self.hold_file.exists())

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing:
                    now = time.monotonic()
                    gate = self._open()
                    due = [p for p in self._queue if p.due <= now] if gate else []
                    if due:
                        break
                    waits = [p.due - now for p in self._queue] if gate else []
                    # A hold file is polled; everything else wakes the condition.
                    timeout = min(waits, default=None)
                    if self.hold_file is not None:
                        timeout = min(timeout or 0.05, 0.05)
                    self._cond.wait(timeout)
                if self._closing:
                    return
                for pending in due:
                    self._queue.remove(pending)
                self._cond.notify_all()
            for pending in due:
                self._respond(pending)

    def _respond(self, pending: _Pending) -> None:
        request = pending.request
        message = self.fail(request) if self.fail is not None else None
        if message is not None:
            settle(pending.future, EngineRequestError(message))
            return
        text, p_fake = self.answer(request)
        now = time.monotonic()
        result = EngineResult(
            request_id=request.request_id,
            text=text,
            finish_reason=self.finish(pending.request),
            fake_probability=p_fake,
            prompt_tokens=len(request.frames) * 64,
            output_tokens=len(text) // 4,
            queue_s=0.0,
            infer_s=now - pending.submitted,
        )
        self.answered += 1
        settle(pending.future, result)

    def _forget(self, future: concurrent.futures.Future[EngineResult]) -> None:
        if not future.cancelled():
            return
        with self._cond:
            self._queue = [p for p in self._queue if p.future is not future]
            self.cancelled += 1
            self._cond.notify_all()
