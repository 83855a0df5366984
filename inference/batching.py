"""Dynamic batching: texts from concurrent requests share one batched prediction call.

    batcher = DynamicBatcher(predictor.predict, max_batch_size=32, max_wait_s=0.005, max_queue=256)
    await batcher.start()
    results = await batcher.submit(["note one", "note two"])   # in input order
    await batcher.close()                                       # finishes everything queued

One collector task on the event loop takes the oldest queued text, waits at most `max_wait_s` for more
to join (up to `max_batch_size`), and hands the batch to ONE worker thread, so generation never blocks the
event loop and the model is never used by two threads at once. The wait runs from the later of the oldest
text's arrival and the end of the previous batch: texts that queued up during a batch wait a moment more
for the callers just answered, whose next texts would otherwise make a second, smaller batch (closed-loop
clients split into groups that never merge). A full batch never waits.

The queue is bounded in texts (`max_queue`): `submit` raises `QueueFull` instead of growing memory. A
caller that gives up (a request timeout cancels `submit`) leaves its texts behind cancelled, and the
collector skips them, so abandoned work is never generated.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

BatchFunction = Callable[[list[str]], Sequence[Any]]


class QueueFull(Exception):
    """The queue cannot take the texts of this request now (the caller answers 429)."""


class BatcherClosed(Exception):
    """The server is shutting down and accepts no new texts (the caller answers 503)."""


@dataclass
class _Pending:
    text: str
    future: asyncio.Future
    enqueued: float


class DynamicBatcher:
    """Collect texts from concurrent callers into batches for `predict_batch(texts) -> results`.

    Args:
        predict_batch: called in the worker thread with up to `max_batch_size` texts; returns one result
            per text, in order. An exception fails every request in that batch (and no other).
        max_batch_size: most texts in one call.
        max_wait_s: longest a text waits for company before its batch leaves.
        max_queue: most texts waiting (not counting the batch being generated).
        on_batch: called on the event loop after each call with (texts in the batch, seconds it took).
    """

    def __init__(
        self,
        predict_batch: BatchFunction,
        *,
        max_batch_size: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and max_queue must be at least 1, max_wait_s at least 0")
        self._predict_batch = predict_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None
        self._closing = False
        self.generating = 0  # texts in the batch being generated now
        self._last_batch_end = float("-inf")

    @property
    def queued(self) -> int:
        """Texts waiting for a batch (cancelled ones included until the collector drops them)."""
        return len(self._queue)

    async def start(self) -> None:
        """Start the collector on the running event loop."""
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thce-generate")
        self._task = asyncio.create_task(self._collect(), name="thce-batcher")

    async def warm_up(self, texts: Sequence[str]) -> None:
        """Call `predict_batch(texts)` once in the worker thread, before serving: lazy set-up is paid there,
        and torch's thread pool belongs to the worker alone. Torch run first in another thread (the warm-up
        used to run in the main thread) gives OpenMP a second thread team: every later batch of 32 then took
        3.85 s in the worker instead of 2.82-2.93 s (base model, 2 cores, same run)."""
        if self._executor is None:
            raise BatcherClosed("start() the batcher before warming it up")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._predict_batch, list(texts))

    async def submit(self, texts: Sequence[str]) -> list[Any]:
        """Queue `texts` and wait for their results (input order). Raises QueueFull, BatcherClosed, or the
        prediction's own exception."""
        if self._closing or self._task is None or self._wakeup is None:
            raise BatcherClosed("the server is shutting down")
        if len(self._queue) + len(texts) > self.max_queue:
            raise QueueFull(f"the queue holds {len(self._queue)} of at most {self.max_queue} texts")
        loop = asyncio.get_running_loop()
        now = loop.time()
        pending = [_Pending(text, loop.create_future(), now) for text in texts]
        self._queue.extend(pending)
        self._wakeup.set()
        return list(await asyncio.gather(*(p.future for p in pending)))

    async def close(self) -> None:
        """Refuse new texts, finish every queued one, then stop the collector and the worker thread."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def _collect(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            # Callers whose answers just went out tend to send their next text together: give them
            # max_wait after the last batch too, so that they join one batch instead of splitting in two.
            deadline = max(self._queue[0].enqueued, self._last_batch_end) + self.max_wait_s
            while len(self._queue) < self.max_batch_size and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch: list[_Pending] = []
            while self._queue and len(batch) < self.max_batch_size:
                item = self._queue.popleft()
                if not item.future.done():  # a timed-out request's texts are not generated
                    batch.append(item)
            if batch:
                await self._run(loop, batch)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        self.generating = len(batch)
        start = loop.time()
        try:
            results = await loop.run_in_executor(self._executor, self._predict_batch, [p.text for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(
                    f"the batch function returned {len(results)} results for {len(batch)} texts"
                )
        except Exception as err:  # every request of this batch fails; the collector keeps serving
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
        else:
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
        finally:
            self.generating = 0
            self._last_batch_end = loop.time()
        if self._on_batch is not None:
            self._on_batch(len(batch), loop.time() - start)
