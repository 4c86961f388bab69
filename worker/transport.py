"""Faust's Kafka transport with one change: how long a fetch may wait for data.

Faust fixes ``fetch_max_wait_ms`` at 1500 ms, which on the embedded broker would put up
to 1.5 s between an event and its membership change (``streams.topics.FETCH_MAX_WAIT_MS``
says why). Registered as the ``reach://`` transport
through the ``faust.transports`` entry point.
"""

from __future__ import annotations

from typing import Any, ClassVar

from faust.transport.drivers import aiokafka as driver

from streams.topics import FETCH_MAX_WAIT_MS


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer: ClassVar[type[Any]] = _Consumer
