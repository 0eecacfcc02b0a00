"""The node's streams by id, and the choice of producer for each source."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable

from gridwatch.media.producers import DemuxProducer, Resolver, SyntheticProducer, ThreadProducer
from gridwatch.media.relay import RelayProducer, Relays
from gridwatch.media.sources import Source
from gridwatch.media.stream import Producer, Stream

log = logging.getLogger("gridwatch.media")


class StreamHub:
    def __init__(
        self,
        *,
        idle_grace_s: float = 10.0,
        consumer_queue: int = 256,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 3.0,
        read_timeout_s: float = 5.0,
        refused_retry_s: float = 60.0,
        onvif_resolver: Resolver | None = None,
    ):
        self.streams: dict[str, Stream] = {}
        self.idle_grace_s = idle_grace_s
        self.consumer_queue = consumer_queue
        self._producer_args = {
            "reconnect_min_s": reconnect_min_s,
            "reconnect_max_s": reconnect_max_s,
            "read_timeout_s": read_timeout_s,
            "refused_retry_s": refused_retry_s,
        }
        self.onvif_resolver = onvif_resolver
        # Every producer made here, while it lives: stop() waits for their threads.
        self._producers: weakref.WeakSet[ThreadProducer] = weakref.WeakSet()
        # Streams of other nodes ("relay" sources): set once the node has joined its cluster.
        self.relays: Relays | None = None

        async def unannounced(stream_id: str, here: bool) -> None:
            pass

        # Told when a publisher takes a stream here (True) or the one that had it leaves
        # (False): the node says where the stream is published (media/published.py).
        self.published: Callable[[str, bool], Awaitable[None]] = unannounced

    def _producer(self, stream: Stream) -> Producer:
        kind = stream.source.kind
        producer: ThreadProducer
        if kind == "relay":
            assert self.relays is not None, "relay source before the node joined its cluster"
            return RelayProducer(stream, self.relays, **self._producer_args)
        if kind in ("lavfi", "clock"):
            producer = SyntheticProducer(stream, **self._producer_args)
        else:
            resolve = self.onvif_resolver if kind == "onvif" else None
            producer = DemuxProducer(stream, resolve=resolve, **self._producer_args)
        self._producers.add(producer)
        return producer

    def get(self, stream_id: str) -> Stream | None:
        return self.streams.get(stream_id)

    def upsert(self, stream_id: str, source: Source) -> Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = Stream(
                stream_id,
                source,
                self._producer,
                idle_grace_s=self.idle_grace_s,
                consumer_queue=self.consumer_queue,
            )
            self.streams[stream_id] = stream
        elif stream.source != source:
            stream.replace_source(source)
        return stream

    def remove(self, stream_id: str) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.close()

    def drop_unused(self, keep: Callable[[str], bool]) -> list[str]:
        """Remove the streams nothing uses any more (no consumer, no listener, no producer
        running: past their idle grace) that `keep(id)` does not want kept, e.g. the
        relays and pulls of cameras that moved to another node; their ids. A pushed
        stream stays: its publisher may come back to it."""
        unused = [sid for sid, st in self.streams.items()
                  if not st.pushed and st.producer is None and not st.consumers and not st.listeners
                  and not keep(sid)]  # fmt: skip
        for sid in unused:
            self.remove(sid)
        return unused

    def close(self) -> None:
        for stream_id in list(self.streams):
            self.remove(stream_id)

    async def stop(self, timeout_s: float) -> None:
        """Close every stream and wait, at most `timeout_s` in all, for the producers'
        threads to end, so that none is still in FFmpeg while the interpreter exits.
        A thread still blocked at the deadline (a source that stopped answering, inside
        its read timeout) is named in a warning and left: it is a daemon thread."""
        self.close()
        deadline = time.monotonic() + timeout_s
        for producer in list(self._producers):
            if not await asyncio.to_thread(producer.join, max(0.0, deadline - time.monotonic())):
                log.warning("producer thread still running at shutdown",
                            extra={"stream": producer.stream.id, "seconds": timeout_s})  # fmt: skip
