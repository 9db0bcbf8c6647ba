"""The two Kafka client libraries PyTake could use, side by side on the local broker: what a record
costs to produce and to consume (CPU of this process, every thread included: librdkafka works in
threads of its own), what an idle consumer costs, and how long one record takes from producer to
consumer on an idle broker.

    uv run python benchmarks/kafka_clients.py [--records 50000] [--size 700]

aiokafka: `AIOKafkaProducer.send` and `AIOKafkaConsumer.getmany`, as PyTake used them.
librdkafka (confluent-kafka): `Producer.produce` with delivery reports served by `poll`, and
`Consumer.consume` (batches) in a worker thread, as `confluent_kafka.aio.AIOConsumer` does.
Both with acks from all in-sync replicas, idempotent producers, 5 ms linger, manual commits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Consumer, Producer

from pytake_devstack.servers import ensure_servers


def cpu_s() -> float:
    return time.process_time()  # every thread of the process


async def aiokafka_produce(bootstrap: str, topic: str, payloads: list[bytes]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        start = cpu_s()
        futures = [await producer.send(topic, value, key=str(i % 64).encode()) for i, value in enumerate(payloads)]
        await asyncio.gather(*futures)
        return cpu_s() - start
    finally:
        await producer.stop()


async def librdkafka_produce(bootstrap: str, topic: str, payloads: list[bytes]) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5})
    loop = asyncio.get_running_loop()
    left = len(payloads)
    done = loop.create_future()

    def delivered(err, msg) -> None:  # type: ignore[no-untyped-def]
        nonlocal left
        left -= 1
        if left == 0 and not done.done():
            done.set_result(None)

    start = cpu_s()
    for i, value in enumerate(payloads):
        while True:
            try:
                producer.produce(topic, value, key=str(i % 64).encode(), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.001)
    while not done.done():
        producer.poll(0)
        await asyncio.sleep(0.001)
    used = cpu_s() - start
    producer.flush(10)
    return used


async def aiokafka_consume(bootstrap: str, topic: str, total: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="bench-" + secrets.token_hex(4),
                                enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500)
    await consumer.start()
    try:
        seen, start = 0, cpu_s()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            seen += sum(len(records) for records in batches.values())
            if batches:
                await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        return cpu_s() - start
    finally:
        await consumer.stop()


def _librdkafka_consumer(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + secrets.token_hex(4),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": False})
    consumer.subscribe([topic])
    return consumer


async def librdkafka_consume(bootstrap: str, topic: str, total: int) -> float:
    consumer = _librdkafka_consumer(bootstrap, topic)
    try:
        seen, start = 0, cpu_s()
        while seen < total:
            records = await asyncio.to_thread(consumer.consume, 500, 1.0)
            seen += len(records)
            if records:
                consumer.commit(asynchronous=True)
        return cpu_s() - start
    finally:
        await asyncio.to_thread(consumer.close)


async def idle_cpu(consumer_loop: Callable[[asyncio.Event], Awaitable[None]], seconds: float) -> float:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer_loop(stop))
    await asyncio.sleep(3)  # joined its group
    start = cpu_s()
    await asyncio.sleep(seconds)
    used = cpu_s() - start
    stop.set()
    await task
    return used / seconds


def aiokafka_idle(bootstrap: str, topic: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def run(stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="bench-" + secrets.token_hex(4),
                                    enable_auto_commit=False, auto_offset_reset="latest")
        await consumer.start()
        while not stop.is_set():
            await consumer.getmany(timeout_ms=1000)
        await consumer.stop()
    return run


def librdkafka_idle(bootstrap: str, topic: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def run(stop: asyncio.Event) -> None:
        consumer = _librdkafka_consumer(bootstrap, topic)
        while not stop.is_set():
            await asyncio.to_thread(consumer.consume, 500, 1.0)
        await asyncio.to_thread(consumer.close)
    return run


async def round_trips(bootstrap: str, topic: str, library: str, count: int = 200) -> list[float]:
    """One record at a time, producer to consumer, on an idle broker (ms)."""
    times: list[float] = []
    if library == "aiokafka":
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="bench-" + secrets.token_hex(4),
                                    enable_auto_commit=False, auto_offset_reset="latest")
        await producer.start()
        await consumer.start()
        await consumer.getmany(timeout_ms=3000)  # joined
        for _ in range(count):
            sent = time.perf_counter()
            await producer.send(topic, b"x")
            while not await consumer.getmany(timeout_ms=1000):
                pass
            times.append((time.perf_counter() - sent) * 1000)
        await producer.stop()
        await consumer.stop()
        return times
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5})
    rd_consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + secrets.token_hex(4),
                            "enable.auto.commit": False, "auto.offset.reset": "latest",
                            "fetch.wait.max.ms": 500})
    rd_consumer.subscribe([topic])
    await asyncio.to_thread(rd_consumer.consume, 1, 3.0)  # joined
    for _ in range(count):
        sent = time.perf_counter()
        producer.produce(topic, b"x")
        producer.poll(0)
        while not await asyncio.to_thread(rd_consumer.consume, 1, 1.0):
            pass
        times.append((time.perf_counter() - sent) * 1000)
    producer.flush(5)
    await asyncio.to_thread(rd_consumer.close)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=700, help="bytes per record (a PyTake event is 0.5-1 kB)")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or ensure_servers().env["KAFKA_BOOTSTRAP_SERVERS"]
    payloads = [os.urandom(args.size // 2).hex().encode() for _ in range(args.records)]
    topics = {name: f"bench-clients-{name}-{secrets.token_hex(3)}" for name in ("aiokafka", "librdkafka")}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, 6, 1) for t in topics.values()])
    try:
        print(f"{args.records} records of {args.size} bytes; CPU of this process (µs per record)")
        print(f"{'':12} {'produce':>10} {'consume':>10} {'idle %core':>11} {'p50 ms':>8} {'p99 ms':>8}")
        for name, produce, consume, idle in (
                ("aiokafka", aiokafka_produce, aiokafka_consume, aiokafka_idle),
                ("librdkafka", librdkafka_produce, librdkafka_consume, librdkafka_idle)):
            topic = topics[name]
            produced = await produce(bootstrap, topic, payloads)
            consumed = await consume(bootstrap, topic, args.records)
            idling = await idle_cpu(idle(bootstrap, topic), 10)
            trips = sorted(await round_trips(bootstrap, topic, name))
            p99 = trips[int(len(trips) * 0.99) - 1]
            print(f"{name:12} {produced / args.records * 1e6:>10.1f} {consumed / args.records * 1e6:>10.1f} "
                  f"{idling * 100:>11.2f} {statistics.median(trips):>8.1f} {p99:>8.1f}", flush=True)
    finally:
        await admin.delete_topics(list(topics.values()))
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
