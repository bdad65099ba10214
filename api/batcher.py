"""Micro-batching for /v1/score: concurrent requests are scored together in one pass.

One text alone leaves most of the CPU's matrix units idle, and every pass over a table has a
fixed cost of its own; eight requests at once cost little more than one. Requests wait at
most ``max_wait`` for company, and scoring runs in one thread, so requests never contend
for the models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# One request: its texts, and what else its answer depends on (the tenant's reference index).
Batched = tuple[list, Any]


class ScoreBatcher:
    def __init__(self, score: Callable[[list[Batched]], list[Any]], max_wait: float = 0.004, max_texts: int = 64):
        """``score``: the answers of several requests, one per request, in order."""
        self.score, self.max_wait, self.max_texts = score, max_wait, max_texts
        self._queue: asyncio.Queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list, context: Hashable = None) -> Any:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(((texts, context), future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(loop)
            try:
                answers = await loop.run_in_executor(self._executor, self.score, [request for request, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to each waiting request
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list:
        """The next batch: the first request waiting, whatever queued while the last batch was
        scored, then what arrives within ``max_wait``, up to ``max_texts`` texts."""
        batch = [await self._queue.get()]
        size = len(batch[0][0][0])
        deadline = loop.time() + self.max_wait
        while size < self.max_texts:
            if self._queue.empty():
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            batch.append(item)
            size += len(item[0][0])
        return batch
