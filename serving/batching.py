"""Server-side dynamic batching of concurrent requests to one signature of one model version.

Requests queue on the event loop. While the model is busy with one batch the next requests wait;
when it is free, everything queued (up to ``max_batch`` rows) is concatenated along the batch
dimension and run as one call in a thread. With ``window_s > 0`` the batcher also waits that long
for company before it runs a batch that is not full. At concurrency 1 nothing waits (window 0),
so latency is one model call; under load the batches fill themselves.

A batch that fails is re-run request by request, so one bad request never fails its neighbours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = 64
    window_s: float = 0.0
    max_inflight: int = 1  # batches of one signature running at once
    chunk_rows: int = 256  # a request bigger than this (and than max_batch) runs in slices

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.window_s < 0:
            raise ValueError(f"batch window must be >= 0 s, got {self.window_s}")
        if self.max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {self.max_inflight}")
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {self.chunk_rows}")


@dataclass
class _Item:
    inputs: Arrays
    rows: int
    future: asyncio.Future[Arrays]


class Batcher:
    """Batches ``run(inputs) -> outputs`` calls; every input and output has the batch as dim 0."""

    def __init__(
        self,
        run: Callable[[Arrays], Arrays],
        executor: Executor | None,
        config: BatchingConfig,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self._executor = executor
        self._config = config
        self._on_batch = on_batch
        self._queue: list[_Item] = []
        self._inflight = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, inputs: Arrays) -> Arrays:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new loop (tests): start afresh
            self._loop, self._queue, self._inflight = loop, [], 0
        rows = _rows(inputs)
        future: asyncio.Future[Arrays] = loop.create_future()
        self._queue.append(_Item(inputs, rows, future))
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
        loop = asyncio.get_running_loop()
        if len(batch) == 1:
            await self._execute_one(batch[0])
            return
        keys = batch[0].inputs.keys()
        joined = {key: np.concatenate([item.inputs[key] for item in batch]) for key in keys}
        try:
            outputs = await loop.run_in_executor(self._executor, self._run, joined)
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
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._run_chunked, item.inputs,
                                                 item.rows)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(item.rows)
        if not item.future.done():
            item.future.set_result(outputs)


    def _run_chunked(self, inputs: Arrays, rows: int) -> Arrays:
        """Run one request; a big one in slices of ``chunk_rows``, so that the model's
        activations (about 1 MB per image for our CNN) stay bounded by the slice, not by the
        request: one 10,000-image request peaked at 1.9 GB run whole."""
        chunk = max(self._config.max_batch, self._config.chunk_rows)
        if rows <= chunk:
            return self._run(inputs)
        parts = [self._run({key: value[start:start + chunk] for key, value in inputs.items()})
                 for start in range(0, rows, chunk)]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _rows(inputs: Arrays) -> int:
    sizes = {int(value.shape[0]) for value in inputs.values()}
    if len(sizes) != 1:
        raise ValueError(f"inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()
