"""``serving.deadline.within``: the request deadline that runs in the request's own task."""

from __future__ import annotations

import asyncio

import pytest

from serving.deadline import within


async def _value_after(seconds: float, value: int) -> int:
    await asyncio.sleep(seconds)
    return value


def test_within_returns_the_value_and_leaves_no_timer() -> None:
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        value = await within(_value_after(0.01, 7), 5.0)
        return value, len([h for h in loop._scheduled if not h.cancelled()])  # type: ignore[attr-defined]

    value, timers = asyncio.run(main())
    assert value == 7
    assert timers == 0  # the deadline's timer is cancelled once the call is done


def test_within_raises_timeout_at_the_deadline_and_the_task_goes_on() -> None:
    async def main() -> str:
        try:
            await within(_value_after(5.0, 1), 0.05)
        except asyncio.TimeoutError:
            await asyncio.sleep(0)  # the task is usable after the timeout
            return "timed out"
        return "no timeout"

    assert asyncio.run(main()) == "timed out"


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def main() -> None:
        task = asyncio.ensure_future(within(_value_after(5.0, 1), 10.0))
        await asyncio.sleep(0.01)
        task.cancel()  # a client that went away, not the deadline
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_the_same_task_runs_the_coroutine() -> None:
    async def where() -> asyncio.Task[object] | None:
        return asyncio.current_task()

    async def main() -> bool:
        return await within(where(), 1.0) is asyncio.current_task()

    assert asyncio.run(main())  # no extra task per request, unlike asyncio.wait_for on 3.10


class _Aborted(Exception):
    pass


class _FakeContext:
    """The part of ``grpc.aio.ServicerContext`` ``_Calls.run`` uses."""

    def __init__(self, remaining_s: float) -> None:
        self.remaining_s = remaining_s
        self.aborted: tuple[object, str] | None = None

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> float:
        return self.remaining_s

    async def abort(self, code: object, message: str) -> None:
        self.aborted = (code, message)
        raise _Aborted(message)


def test_a_grpc_call_past_the_clients_deadline_gets_deadline_exceeded() -> None:
    import grpc

    from serving.admission import BodyBudget
    from serving.app import Ctx, ServerConfig
    from serving.drain import Drain
    from serving.grpc_server import _Calls
    from serving.metrics import Metrics

    class _Manager:
        def models(self) -> list[str]:
            return []

    class _Request:
        def ByteSize(self) -> int:  # noqa: N802 - protobuf's name
            return 10

    ctx = Ctx(_Manager(), Metrics(), ServerConfig(timeout_s=30), Drain(),  # type: ignore[arg-type]
              BodyBudget(None))
    context = _FakeContext(remaining_s=0.05)

    async def slow_body(call: dict[str, object]) -> str:
        await asyncio.sleep(5)
        return "late"

    async def main() -> None:
        with pytest.raises(_Aborted):
            await _Calls(ctx).run("grpc_predict", _Request(), context, slow_body)

    started = asyncio.run(_timed(main()))
    assert context.aborted is not None and context.aborted[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert started < 2.0  # the client's 50 ms deadline, not the server's 30 s
    assert ctx.drain.active == 0 and ctx.budget.in_use == 0  # nothing held after the abort


async def _timed(coro: object) -> float:
    import time

    start = time.perf_counter()
    await coro  # type: ignore[misc]
    return time.perf_counter() - start
