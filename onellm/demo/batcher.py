"""Batching of concurrent chat requests: one worker thread, one generation batch at a time.

Gradio runs each streaming chat handler in a worker of its own (up to the queue's ``concurrency_limit``) and cannot
batch streaming handlers itself (``batch=True`` is for non-streaming functions). So the handlers do not generate:
each hands a :class:`Request` to the :class:`Batcher` and reads its own :class:`Request.updates` queue.

The batcher's thread takes every request waiting when it becomes free (after waiting ``window_s`` for stragglers
when it was idle), groups those whose sampling settings agree (:func:`batch_key`; ``max_new_tokens`` may differ),
up to ``max_batch``, and calls ``run_batch(requests)`` once for them: the model-facing side
(:class:`~onellm.demo.backend.DemoBackend`) runs them as one left-padded batch and reports through
:meth:`Request.piece` / :meth:`Request.finish`. Requests that arrive while a batch runs wait for it and then form
the next batch together. A request's ``stop`` event (the stop button) ends its row at the next token; the other
rows of its batch go on.

Nothing here knows about models or gradio; the tests drive it with a plain function.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator, Sequence

_CLOSE = object()


@dataclass
class Update:
    """What a chat handler shows: the answer so far (``text``); the last update has ``done=True`` and the final
    answer (exactly what ``onellm infer`` writes for the same request)."""

    text: str
    done: bool = False
    stopped: bool = False  # the stop button ended it


@dataclass(eq=False)
class Request:
    """One conversation turn waiting for (or in) a generation batch.

    ``payload`` is whatever ``run_batch`` needs (the backend's packed sample); ``gen`` its sampling settings.
    """

    payload: Any
    gen: Any
    stop: threading.Event = field(default_factory=threading.Event)
    updates: "queue.Queue[tuple[str, Any]]" = field(default_factory=queue.Queue)
    submitted: float = field(default_factory=time.monotonic)
    batch_size: int = 0  # size of the batch it ran in (set by the batcher; tests read it)
    finished: bool = False

    # Called by run_batch (the batcher's thread) --------------------------------------------------
    def piece(self, text_so_far: str) -> None:
        if not self.finished:
            self.updates.put(("piece", text_so_far))

    def finish(self, answer: str) -> None:
        if not self.finished:
            self.finished = True
            self.updates.put(("done", answer))

    def fail(self, error: BaseException) -> None:
        if not self.finished:
            self.finished = True
            self.updates.put(("error", error))

    # Read by the handler -------------------------------------------------------------------------
    def stream(self, timeout: float | None = None) -> Iterator[Update]:
        """Updates until the answer is done; raises what ``run_batch`` raised. Closing the iterator early (a
        cancelled gradio event) sets ``stop``, so the row stops generating."""
        try:
            while True:
                kind, value = self.updates.get(timeout=timeout)
                if kind == "piece":
                    yield Update(value)
                elif kind == "done":
                    yield Update(value, done=True, stopped=self.stop.is_set())
                    return
                else:
                    raise value
        finally:
            if not self.finished:
                self.stop.set()


def batch_key(gen: Any) -> Hashable:
    """Requests may share a batch when this agrees: greedy ones together, sampled ones with equal temperature and
    top-p (``max_new_tokens`` is per row)."""
    if getattr(gen, "greedy", False):
        return ("greedy", tuple(getattr(gen, "stop_strings", ())))
    return ("sample", float(gen.temperature), float(gen.top_p), tuple(getattr(gen, "stop_strings", ())))


class Batcher:
    """A worker thread that runs waiting requests in batches (module docstring).

    Args:
        run_batch: ``run_batch(requests)``; must call ``finish`` or ``fail`` on each (the batcher fails the ones it
            did not finish, and all of them if it raises).
        max_batch: most requests per batch.
        window_s: how long an idle batcher waits for more requests after the first one arrives.
    """

    def __init__(self, run_batch: Callable[[Sequence[Request]], None], max_batch: int = 4, window_s: float = 0.02,
                 name: str = "onellm-demo-batcher"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run_batch, self.max_batch, self.window_s = run_batch, max_batch, max(float(window_s), 0.0)
        self._inbox: "queue.Queue[Any]" = queue.Queue()
        self._pending: deque[Request] = deque()
        self._closed = False
        self.batches: list[int] = []  # sizes of the batches run so far (for tests and logs)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> Request:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        self._inbox.put(request)
        return request

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the thread after the batch in flight; waiting requests fail."""
        if not self._closed:
            self._closed = True
            self._inbox.put(_CLOSE)
            self._thread.join(timeout)

    # ------------------------------------------------------------------------------------------------
    def _drain(self, block: bool, timeout: float | None = None) -> bool:
        """Move requests from the inbox to the pending list; False once closed."""
        try:
            item = self._inbox.get(block=block, timeout=timeout)
        except queue.Empty:
            return True
        while True:
            if item is _CLOSE:
                return False
            self._pending.append(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _take(self) -> list[Request]:
        """The next batch: the oldest pending request and the following ones with its batch key."""
        first = self._pending.popleft()
        key, batch, rest = batch_key(first.gen), [first], deque()
        while self._pending:
            r = self._pending.popleft()
            if len(batch) < self.max_batch and batch_key(r.gen) == key:
                batch.append(r)
            else:
                rest.append(r)
        self._pending = rest
        return batch

    def _loop(self) -> None:
        running = True
        while running:
            if not self._pending:
                running = self._drain(block=True)
                if running and self.window_s:  # idle: give requests sent at the same moment a chance to join
                    deadline = time.monotonic() + self.window_s
                    while running and len(self._pending) < self.max_batch:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        running = self._drain(block=True, timeout=left)
            else:
                running = self._drain(block=False)
            if not running:
                break
            if not self._pending:
                continue
            batch = self._take()
            live = []
            for r in batch:
                if r.stop.is_set():  # stopped while it waited: nothing generated
                    r.finish("")
                else:
                    live.append(r)
            if not live:
                continue
            for r in live:
                r.batch_size = len(live)
            self.batches.append(len(live))
            try:
                self.run_batch(live)
            except BaseException as exc:  # reported to every handler of the batch; the thread goes on
                for r in live:
                    r.fail(exc)
            for r in live:
                if not r.finished:
                    r.fail(RuntimeError("generation ended without an answer"))
        for r in self._pending:
            r.fail(RuntimeError("the demo is shutting down"))
        self._pending.clear()
