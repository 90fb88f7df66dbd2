"""A real subscriber (paho-mqtt) playing Home Assistant;
the broker is daemon/cli/demo/mqttbroker.py."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import paho.mqtt.client as mqtt

from daemon.cli.demo.mqttbroker import DEVICES, PASSWORD, Broker, have_mosquitto
from daemon.runtime.supervisor import ToolPool
from daemon.runtime.tools import ToolRunner
from daemon.vocabulary import ToolDone

__all__ = ["Broker", "Subscriber", "ToolBench", "have_mosquitto", "DEVICES", "PASSWORD"]


class ToolBench:
    """A :class:`ToolRunner` on the supervisor's real :class:`ToolPool` (its executor and
    loop timers), on an event loop of its own thread, driven from the test's thread:
    ``start``/``cancel`` hop to the loop as the supervisor's calls do, and every
    ``ToolDone`` the runner posts lands in :meth:`get`."""

    WAIT = 10.0  # generous wall bound for a result on a loaded machine; results come in ms

    def __init__(self, runner: ToolRunner) -> None:
        self.runner = runner
        self.posted: queue.Queue[ToolDone] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tool-bench-loop")
        self.thread.start()
        self.pool = self._on_loop(lambda: ToolPool(self.loop, self.posted.put))
        self.clean_stop: bool | None = None

    def _on_loop(self, fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(self.WAIT)

    def start(self, call_id: str, name: str, args: Mapping[str, Any]) -> None:
        self._on_loop(lambda: self.runner.start(call_id, name, args, self.pool))

    def cancel(self, call_id: str) -> None:
        self._on_loop(lambda: self.runner.cancel(call_id))

    def get(self, timeout: float = WAIT) -> ToolDone:
        return self.posted.get(timeout=timeout)

    def empty_after(self, seconds: float) -> bool:
        try:
            self.posted.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        """What the supervisor's stop does: the runner stops every call, the pool joins
        its threads; then this loop ends."""
        if not self.thread.is_alive():
            return

        async def stop() -> bool:
            self.runner.close()
            return await self.pool.shutdown(grace=self.WAIT)

        self.clean_stop = asyncio.run_coroutine_threadsafe(stop(), self.loop).result(self.WAIT * 2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(self.WAIT)
        self.loop.close()


class Subscriber:
    """A paho client (user ``ha``) that records ``(topic, payload, retain)``.

    The constructor returns once the broker has acknowledged every subscription
    (SUBACK): a message published after that reaches :attr:`messages`. (A non-retained
    publish made between CONNECT and SUBACK is never delivered: the test would wait for
    it in vain.)"""

    def __init__(self, broker: Broker, topics: tuple[str, ...] = ("#",), user: str = "ha") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._unacked: set[int] = set()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{user}-{id(self)}"
        )
        self.client.username_pw_set(user, PASSWORD)
        self.topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", broker.port, keepalive=30)
        self.client.loop_start()
        # A cap that only ends a hung test: on a busy machine the SUBACK may take a while.
        if not self.subscribed.wait(30):
            self.close()
            raise AssertionError(f"{user}: the broker never acknowledged {topics}")

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        with self._cond:
            self.subscribed.clear()
            self._unacked.clear()
            for t in self.topics:
                self._unacked.add(client.subscribe(t, qos=1)[1])
            if not self._unacked:
                self.subscribed.set()

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, reason_codes: Any, props: Any = None
    ) -> None:
        with self._cond:
            self._unacked.discard(mid)
            if not self._unacked:
                self.subscribed.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def wait(
        self,
        predicate: Callable[[list[tuple[str, bytes, bool]]], Any],
        timeout: float = 30.0,
        what: str = "",
    ) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = predicate(self.messages)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"never saw {what or predicate}; got "
                        f"{[(t, p[:60]) for t, p, _ in self.messages[-30:]]}"
                    )
                self._cond.wait(left)

    def last(self, topic: str) -> bytes | None:
        with self._cond:
            return next((p for t, p, _ in reversed(self.messages) if t == topic), None)

    def wait_value(self, topic: str, value: str, timeout: float = 30.0) -> None:
        self.wait(
            lambda ms: any(t == topic and p.decode() == value for t, p, _ in ms),
            timeout,
            f"{topic} = {value!r}",
        )

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload.encode(), qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


PREFIX = "voiced/dev1"


def mqtt_config(broker: Broker, tmp: Path, user: str = "dev1") -> str:
    pw = tmp / f"mqtt-password-{user}"
    pw.write_text(PASSWORD + "\n")
    return (
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "{user}"\n'
        f'password_file = "{pw}"\ntopic_prefix = "voiced/{user}"\nreconnect_max = 0.5\n'
        f"keepalive = 5\n"
    )


def _until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)
