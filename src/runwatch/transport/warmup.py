"""Sequence state for a partition a worker takes over: replay what its last owner processed.

A worker's partial sequence matches live in its memory. When a partition moves (its owner
stopped or was killed), the new owner would start it with none, and a secret read acknowledged
by the old owner could no longer meet its egress. So before consuming a partition it takes
over, a worker reads the partition's messages of the last ``window_ns`` (the longest sequence
window of its rules) up to the durable consumer's ack floor with an ephemeral consumer and feeds
their events to the engine, keeping the state and discarding the alerts (the old owner raised
and stored them). What is past the ack floor comes from the durable consumer as usual.
Bounded by ``max_messages`` per partition (a cut replay is counted).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable
from typing import Any

from runwatch.events import Event


async def warm_up(js: Any, stream: str, consumer: str, filter_subject: str, window_ns: int,
                  feed: Callable[[list[Event]], object], check: Callable[[Any], Any],
                  max_messages: int = 100_000, batch: int = 512) -> tuple[int, bool]:
    """Replay the partition into ``feed`` (see the module); ``(events fed, whether max_messages
    cut the replay short)``.

    ``check`` turns a message into an event, an alert or None (malformed: skipped, not counted
    again; the old owner counted it).
    """
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    info = await js.consumer_info(stream, consumer)
    floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
    if floor == 0:
        return 0, False  # nothing was processed: the durable consumer delivers all of it
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(microseconds=window_ns // 1000)
    cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start,
                         ack_policy=AckPolicy.NONE, filter_subject=filter_subject, inactive_threshold=30.0)
    sub = await js.pull_subscribe(filter_subject, stream=stream, config=cfg)
    fed = seen = 0
    try:
        while seen < max_messages:
            try:
                msgs = await sub.fetch(min(batch, max_messages - seen), timeout=0.5)
            except (TimeoutError, NatsTimeout):
                break
            events: list[Event] = []
            done = False
            for m in msgs:
                if m.metadata.sequence.stream > floor:
                    done = True
                    break
                seen += 1
                obj = check(m)
                if isinstance(obj, Event):
                    events.append(obj)
            if events:
                feed(events)
                fed += len(events)
            if done:
                return fed, False
        return fed, seen >= max_messages
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
