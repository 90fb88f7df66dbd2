"""The supervisor's inbox: strict order, thread safety, and one wakeup per burst.

The inbox is bound to a real asyncio loop the way the supervisor binds it
(``Inbox._bind`` is its contract with :class:`~daemon.runtime.supervisor.Supervisor`), and
events are read from the queue it returns.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from daemon.runtime.supervisor import Inbox
from daemon.session import SendText


class CountingLoop(asyncio.SelectorEventLoop):
    """A real selector loop that counts cross-thread wakeups (each one writes the
    loop's self-pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.threadsafe_calls = 0

    def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> Any:
        self.threadsafe_calls += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


def _run(body: Any, loop: asyncio.AbstractEventLoop | None = None) -> Any:
    loop = loop or asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(body(), 30))
    finally:
        loop.close()


def _tags(events: list[Any]) -> list[str]:
    return [e.text for e in events]


async def _take(queue: asyncio.Queue[Any], n: int) -> list[Any]:
    return [await queue.get() for _ in range(n)]


def test_events_posted_before_binding_arrive_first_and_in_order() -> None:
    inbox = Inbox()
    for i in range(5):
        inbox.post(SendText(f"early-{i}", False))

    async def body() -> list[str]:
        queue = inbox._bind(asyncio.get_running_loop())
        inbox.post(SendText("late-0", False))  # from the loop thread
        t = threading.Thread(target=inbox.post, args=(SendText("late-1", False),))
        t.start()
        t.join()
        got = await _take(queue, 7)
        assert queue.empty()
        return _tags(got)

    assert _run(body) == [f"early-{i}" for i in range(5)] + ["late-0", "late-1"]


def test_concurrent_posts_from_several_threads_across_binding_keep_each_threads_order() -> None:
    inbox = Inbox()
    threads, per_thread = 6, 400
    bound = threading.Event()

    def poster(k: int) -> None:
        for i in range(per_thread):
            if i == per_thread // 4:
                bound.wait(10)  # a quarter before the loop binds, the rest after
            inbox.post(SendText(f"{k}:{i}", False))

    workers = [threading.Thread(target=poster, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()

    async def body() -> list[str]:
        queue = inbox._bind(asyncio.get_running_loop())
        bound.set()
        got: list[str] = []
        for j in range(threads * per_thread):
            got.append((await queue.get()).text)
            if j % 97 == 0:
                inbox.post(SendText(f"loop:{j}", False))  # the loop thread posts too
                got.append((await queue.get()).text)
        return got

    got = _run(body)
    for w in workers:
        w.join()
    assert len(got) == len(set(got))
    for k in range(threads):
        mine = [int(t.split(":")[1]) for t in got if t.startswith(f"{k}:")]
        assert mine == list(range(per_thread)), f"thread {k} out of order or lost events"
    assert sum(t.startswith("loop:") for t in got) == len(range(0, threads * per_thread, 97))


def test_a_loop_thread_post_never_overtakes_an_earlier_post_from_another_thread() -> None:
    inbox = Inbox()

    async def body() -> list[str]:
        queue = inbox._bind(asyncio.get_running_loop())
        for i in range(50):
            # The other thread's post is pending (its drain not yet run: the loop is
            # blocked in join) when the loop thread posts the next one.
            t = threading.Thread(target=inbox.post, args=(SendText(f"hw-{i}", False),))
            t.start()
            t.join()
            inbox.post(SendText(f"loop-{i}", False))
        return _tags(await _take(queue, 100))

    assert _run(body) == [f"{src}-{i}" for i in range(50) for src in ("hw", "loop")]


def test_a_burst_from_another_thread_costs_one_wakeup_and_loop_posts_none() -> None:
    inbox = Inbox()
    loop = CountingLoop()

    async def body() -> tuple[list[str], int, int]:
        queue = inbox._bind(asyncio.get_running_loop())
        base = loop.threadsafe_calls

        def burst() -> None:
            for i in range(100):
                inbox.post(SendText(f"hw-{i}", False))

        t = threading.Thread(target=burst)
        t.start()
        t.join()  # the loop is blocked: one drain pending
        burst_wakeups = loop.threadsafe_calls - base
        got = await _take(queue, 100)
        base = loop.threadsafe_calls
        for i in range(100):
            inbox.post(SendText(f"loop-{i}", False))
        got += await _take(queue, 100)
        return _tags(got), burst_wakeups, loop.threadsafe_calls - base

    tags, burst_wakeups, loop_wakeups = _run(body, loop)
    assert tags == [f"hw-{i}" for i in range(100)] + [f"loop-{i}" for i in range(100)]
    assert burst_wakeups == 1
    assert loop_wakeups == 0


def test_events_posted_after_unbinding_wait_for_the_next_binding() -> None:
    inbox = Inbox()

    async def first() -> list[str]:
        queue = inbox._bind(asyncio.get_running_loop())
        inbox.post(SendText("a", False))
        got = _tags(await _take(queue, 1))
        inbox._unbind()
        return got

    assert _run(first) == ["a"]
    inbox.post(SendText("b", False))  # no loop: waits
    t = threading.Thread(target=inbox.post, args=(SendText("c", False),))
    t.start()
    t.join()

    async def second() -> list[str]:
        queue = inbox._bind(asyncio.get_running_loop())
        inbox.post(SendText("d", False))
        return _tags(await _take(queue, 3))

    assert _run(second) == ["b", "c", "d"]


def test_posting_from_another_thread_to_a_closed_loop_does_not_raise() -> None:
    inbox = Inbox()
    loop = asyncio.new_event_loop()

    async def bind() -> None:
        inbox._bind(asyncio.get_running_loop())

    loop.run_until_complete(bind())
    loop.close()  # the daemon is gone without unbinding
    errors: list[BaseException] = []

    def post() -> None:
        try:
            inbox.post(SendText("gone", False))
        except BaseException as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    t = threading.Thread(target=post)
    t.start()
    t.join()
    assert errors == []
