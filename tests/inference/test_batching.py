"""DynamicBatcher with a fake batch function: grouping, order, bounded queue, cancellation, failures, drain."""

import asyncio
import threading
import time

import pytest

from thce.inference.batching import BatcherClosed, DynamicBatcher, QueueFull


class SlowEcho:
    """Echoes texts after `delay` seconds and records each call's batch."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def __call__(self, texts: list[str]) -> list[str]:
        self.batches.append(list(texts))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail_on in texts:
            raise RuntimeError("model failure")
        return [text.upper() for text in texts]


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_texts_share_batches_and_keep_order():
    echo = SlowEcho(delay=0.01)
    sizes = []

    async def main():
        batcher = DynamicBatcher(
            echo, max_batch_size=8, max_wait_s=0.05, on_batch=lambda n, s: sizes.append(n)
        )
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit([f"t{i}", f"u{i}"]) for i in range(10)))
        await batcher.close()
        return results

    results = run(main())
    assert results == [[f"T{i}", f"U{i}"] for i in range(10)]
    assert [len(b) for b in echo.batches] == [8, 8, 4]  # 20 texts, batches capped at 8
    assert sizes == [8, 8, 4]
    assert echo.threads and all(name.startswith("thce-generate") for name in echo.threads)


def test_warm_up_runs_in_the_thread_that_runs_every_batch():
    echo = SlowEcho()

    async def scenario():
        batcher = DynamicBatcher(echo, max_batch_size=4, max_wait_s=0.01)
        await batcher.start()
        await batcher.warm_up(["warm"])
        answers = await batcher.submit(["a", "b"])
        await batcher.close()
        return answers

    assert run(scenario()) == ["A", "B"]
    assert echo.batches[0] == ["warm"]
    assert len(echo.threads) == 1 and threading.current_thread().name not in echo.threads


def test_lone_text_leaves_after_max_wait():
    echo = SlowEcho()

    async def main():
        batcher = DynamicBatcher(echo, max_batch_size=32, max_wait_s=0.05)
        await batcher.start()
        start = time.perf_counter()
        result = await batcher.submit(["alone"])
        elapsed = time.perf_counter() - start
        await batcher.close()
        return result, elapsed

    result, elapsed = run(main())
    assert result == ["ALONE"]
    assert 0.04 <= elapsed < 10


def test_queue_is_bounded():
    echo = SlowEcho(delay=0.2)

    async def main():
        batcher = DynamicBatcher(echo, max_batch_size=2, max_wait_s=0, max_queue=3)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(["a", "b"]))
        await asyncio.sleep(0.05)  # a, b are generating; the queue is empty again
        waiting = asyncio.create_task(batcher.submit(["c", "d", "e"]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="at most 3 texts"):
            await batcher.submit(["f"])
        assert batcher.queued == 3
        results = await asyncio.gather(first, waiting)
        await batcher.close()
        return results

    assert run(main()) == [["A", "B"], ["C", "D", "E"]]


def test_abandoned_texts_are_not_generated():
    echo = SlowEcho(delay=1.0)

    async def main():
        batcher = DynamicBatcher(echo, max_batch_size=1, max_wait_s=0)
        await batcher.start()
        busy = asyncio.create_task(batcher.submit(["busy"]))
        while batcher.generating == 0:
            await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit(["gave-up"]), 0.1)
        await busy
        await batcher.submit(["next"])
        await batcher.close()

    run(main())
    assert echo.batches == [["busy"], ["next"]]


def test_a_failing_batch_fails_only_its_requests():
    echo = SlowEcho(fail_on="bad")

    async def main():
        batcher = DynamicBatcher(echo, max_batch_size=1, max_wait_s=0)
        await batcher.start()
        outcomes = await asyncio.gather(
            batcher.submit(["bad"]), batcher.submit(["good"]), return_exceptions=True
        )
        await batcher.close()
        return outcomes

    bad, good = run(main())
    assert isinstance(bad, RuntimeError) and good == ["GOOD"]


def test_close_finishes_queued_texts_then_refuses():
    echo = SlowEcho(delay=0.02)

    async def main():
        batcher = DynamicBatcher(echo, max_batch_size=2, max_wait_s=30)
        await batcher.start()
        pending = [asyncio.create_task(batcher.submit([f"t{i}"])) for i in range(5)]
        await asyncio.sleep(0)
        await batcher.close()  # does not wait out max_wait: closing sends what is queued at once
        with pytest.raises(BatcherClosed):
            await batcher.submit(["late"])
        return await asyncio.gather(*pending)

    start = time.perf_counter()
    assert run(main()) == [[f"T{i}"] for i in range(5)]
    assert time.perf_counter() - start < 20  # far less than max_wait: closing did not wait it out


@pytest.mark.parametrize("kwargs", [{"max_batch_size": 0}, {"max_queue": 0}, {"max_wait_s": -1}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError, match="at least"):
        DynamicBatcher(SlowEcho(), **kwargs)


def test_callers_just_answered_join_the_texts_that_waited():
    echo = SlowEcho(delay=0.1)

    async def main():
        batcher = DynamicBatcher(echo, max_batch_size=4, max_wait_s=0.05)
        await batcher.start()

        async def caller_that_comes_back():
            first = await batcher.submit(["a1"])
            return first + await batcher.submit(["a2"])  # its next text, right after its answer

        returning = asyncio.create_task(caller_that_comes_back())
        await asyncio.sleep(0.08)  # "a1" is generating
        waiting = await batcher.submit(["b"])
        results = await returning
        await batcher.close()
        return results, waiting

    results, waiting = run(main())
    assert results == ["A1", "A2"] and waiting == ["B"]
    assert echo.batches == [["a1"], ["b", "a2"]]  # "b" waited for "a2" instead of leaving alone
