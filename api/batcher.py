"""Micro-batching for /v1/score: concurrent requests are scored together in one LM pass.

One text alone leaves most of the CPU's matrix units idle; eight at once cost little more
than one. Requests wait at most ``max_wait`` for company, and the model runs in one
thread, so requests never contend for it.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pandas as pd


class ScoreBatcher:
    def __init__(self, score, max_wait: float = 0.004, max_texts: int = 64):
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

    async def submit(self, texts: list) -> pd.DataFrame:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0][0])
            deadline = loop.time() + self.max_wait
            while size < self.max_texts:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                batch.append(item)
                size += len(item[0])
            texts = [t for request, _ in batch for t in request]
            try:
                scored = await loop.run_in_executor(self._executor, self.score, texts)
            except Exception as exc:  # noqa: BLE001 - handed to each waiting request
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for request, future in batch:
                if not future.done():
                    future.set_result(scored.iloc[start : start + len(request)].reset_index(drop=True))
                start += len(request)
