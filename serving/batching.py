"""Server-side dynamic batching of concurrent requests to one signature of one model version.

Requests queue on the event loop. While the model is busy with one batch the next requests wait;
when it is free, everything queued (up to ``max_batch`` rows) is concatenated along the batch
dimension and run as one call in a thread. With ``window_s > 0`` the batcher also waits that long
for company before it runs a batch that is not full. At concurrency 1 nothing waits (window 0),
so latency is one model call; under load the batches fill themselves.

A batch that fails is re-run request by request, so one bad request never fails its neighbours.

Two paths around the thread hand-off, both measured in docs/serving.md (Performance):

* **Inline.** When the request is the only work in the server (``alone()``: the only request
  in progress by the drain's count, and nothing else waiting in the event loop's ready queue),
  nothing is queued or running here, and it has at most ``inline_max_rows`` rows, the model
  runs on the event loop itself: there is no company to batch with, and the executor round trip
  (a thread wake-up there and a loop wake-up back) cost about 0.3 ms of a one-image call. Under
  load ``alone()`` is false, so batches form as before.
* **Parallel slices.** A big batch or request is cut into slices of at least
  ``min_slice_rows`` rows that run on ``parallel_slices`` executor threads at once. For 1,024
  images on 2 cores: 19,000 img/s against 17,600 run one slice at a time with TF's thread
  pools, and 19,700-22,000 with ``--intra-op-threads 1``, where one call uses one core.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.options import DEFAULT_BATCH_MAX

Arrays = dict[str, np.ndarray]
# after a model call: its inputs, its outputs, and the (rows, tag) of each request it answered
Answered = Callable[[Arrays, Arrays, list[tuple[int, Any]]], None]


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = DEFAULT_BATCH_MAX
    window_s: float = 0.0
    max_inflight: int = 1  # batches of one signature running at once
    chunk_rows: int = 128  # the most rows one model call gets (or max_batch, if bigger)
    parallel_slices: int = field(default_factory=lambda: os.cpu_count() or 1)
    min_slice_rows: int = 32  # a call is cut for parallelism only into slices this big
    inline_max_rows: int = 8  # a lone request this small runs on the event loop (0: never)

    def __post_init__(self) -> None:
        minimums = {"max_batch": 1, "max_inflight": 1, "chunk_rows": 1, "parallel_slices": 1,
                    "min_slice_rows": 1, "inline_max_rows": 0}
        for name, minimum in minimums.items():
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {getattr(self, name)}")
        if self.window_s < 0:
            raise ValueError(f"batch window must be >= 0 s, got {self.window_s}")

    def slices(self, rows: int) -> list[tuple[int, int]]:
        """``[start, end)`` ranges one call of ``rows`` rows runs as: at most
        ``max(max_batch, chunk_rows)`` rows each (bounding the activations in memory), and cut
        further, into slices of at least ``min_slice_rows``, to use ``parallel_slices`` threads."""
        if rows <= 0:  # an empty request still makes one call (the model answers its shape)
            return [(0, 0)]
        chunk = max(self.max_batch, self.chunk_rows)
        parts = max(math.ceil(rows / chunk), min(self.parallel_slices, rows // self.min_slice_rows))
        size = math.ceil(rows / parts)  # parts >= 1: rows > 0 needs at least one chunk
        return [(start, min(start + size, rows)) for start in range(0, rows, size)]


@dataclass
class _Item:
    inputs: Arrays
    rows: int
    future: asyncio.Future[Arrays]
    tag: Any = None  # the request's, handed back to ``on_answered``


class Batcher:
    """Batches ``run(inputs) -> outputs`` calls; every input and output has the batch as dim 0."""

    def __init__(
        self,
        run: Callable[[Arrays], Arrays],
        executor: Executor | None,
        config: BatchingConfig,
        on_batch: Callable[[int], None] | None = None,
        alone: Callable[[], bool] | None = None,
        on_answered: Answered | None = None,
    ) -> None:
        """``alone()``: whether the calling request is the only one in progress in the server;
        None (a batcher used outside a server) never runs inline. ``on_answered(inputs,
        outputs, [(rows, tag), ...])``: once per model call that answered requests with a
        ``submit`` tag, before they get their outputs: on the model's thread right after the
        call (on the event loop for a call it ran inline or in slices); thread-safe, it must not
        raise. ``tag`` is each request's, None for a request submitted without one."""
        self._run = run
        self._on_answered = on_answered
        self._alone = alone
        self._executor = executor
        self._config = config
        self._on_batch = on_batch
        self._queue: list[_Item] = []
        self._inflight = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, inputs: Arrays, tag: Any = None) -> Arrays:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new loop (tests): start afresh
            self._loop, self._queue, self._inflight = loop, [], 0
        rows = _rows(inputs)
        if (rows <= self._config.inline_max_rows and not self._queue and not self._inflight
                and self._alone is not None and self._alone()):
            outputs = self._run(inputs)  # on the loop: nothing to batch with, no hand-off
            if self._on_batch is not None:
                self._on_batch(rows)
            if self._on_answered is not None and tag is not None:
                self._on_answered(inputs, outputs, [(rows, tag)])
            return outputs
        future: asyncio.Future[Arrays] = loop.create_future()
        self._queue.append(_Item(inputs, rows, future, tag))
        if self._inflight < self._config.max_inflight:
            self._inflight += 1
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                if self._config.window_s > 0 and self._queued_rows() < self._config.max_batch:
                    await asyncio.sleep(self._config.window_s)
                batch = self._take()
                if batch:
                    await self._execute(batch)
        finally:
            self._inflight -= 1

    def _queued_rows(self) -> int:
        return sum(item.rows for item in self._queue)

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        while self._queue:
            item = self._queue[0]
            if batch and rows + item.rows > self._config.max_batch:
                break
            batch.append(self._queue.pop(0))
            rows += item.rows
        return [item for item in batch if not item.future.cancelled()]

    async def _execute(self, batch: list[_Item]) -> None:
        if len(batch) == 1:
            await self._execute_one(batch[0])
            return
        keys = batch[0].inputs.keys()
        joined = {key: np.concatenate([item.inputs[key] for item in batch]) for key in keys}
        try:
            outputs = await self._call(joined, len(next(iter(joined.values()))),
                                       [(item.rows, item.tag) for item in batch])
        except Exception:  # one bad request: run them one by one so only it fails
            for item in batch:
                await self._execute_one(item)
            return
        if self._on_batch is not None:
            self._on_batch(sum(item.rows for item in batch))
        start = 0
        for item in batch:
            end = start + item.rows
            if not item.future.done():
                item.future.set_result({key: value[start:end] for key, value in outputs.items()})
            start = end

    async def _execute_one(self, item: _Item) -> None:
        try:
            outputs = await self._call(item.inputs, item.rows, [(item.rows, item.tag)])
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(item.rows)
        if not item.future.done():
            item.future.set_result(outputs)


    async def _call(self, inputs: Arrays, rows: int,
                    requests: list[tuple[int, Any]]) -> Arrays:
        """One model call on the executor, or its slices on ``parallel_slices`` threads at once;
        then ``on_answered`` for the ``requests`` it answers.

        Slicing also bounds memory: one 10,000-image request run whole peaked at 1.9 GB (about
        1 MB of activations per image for our CNN); now at most ``parallel_slices`` slices of at
        most ``max(max_batch, chunk_rows)`` rows are in the model at a time."""
        loop = asyncio.get_running_loop()
        ranges = self._config.slices(rows)
        answered = self._on_answered
        if answered is None or all(tag is None for _, tag in requests):
            answered = None
        if len(ranges) == 1:
            if answered is None:
                return await loop.run_in_executor(self._executor, self._run, inputs)
            # on the model's thread, right after the call: the event loop, which reads and
            # answers the requests, is the server's busiest thread; this one was waiting on
            # TensorFlow and is free (sliced calls below answer on the loop: they are rare)
            return await loop.run_in_executor(self._executor, self._run_answering, inputs,
                                              requests, answered)
        gate = asyncio.Semaphore(self._config.parallel_slices)

        async def part(start: int, end: int) -> Arrays:
            async with gate:
                return await loop.run_in_executor(
                    self._executor, self._run,
                    {key: value[start:end] for key, value in inputs.items()})

        parts = await asyncio.gather(*(part(start, end) for start, end in ranges))
        outputs = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        if answered is not None:
            answered(inputs, outputs, requests)
        return outputs

    def _run_answering(self, inputs: Arrays, requests: list[tuple[int, Any]],
                       answered: Answered) -> Arrays:
        outputs = self._run(inputs)
        answered(inputs, outputs, requests)
        return outputs


def _rows(inputs: Arrays) -> int:
    sizes = {int(value.shape[0]) for value in inputs.values()}
    if len(sizes) != 1:
        raise ValueError(f"inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()
