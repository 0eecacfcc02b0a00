"""The node's streams by id, and the choice of producer for each source."""

from __future__ import annotations

import logging

from gridwatch.media.producers import DemuxProducer, Resolver, SyntheticProducer, ThreadProducer
from gridwatch.media.sources import Source
from gridwatch.media.stream import Stream

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
        onvif_resolver: Resolver | None = None,
    ):
        self.streams: dict[str, Stream] = {}
        self.idle_grace_s = idle_grace_s
        self.consumer_queue = consumer_queue
        self._producer_args = {
            "reconnect_min_s": reconnect_min_s,
            "reconnect_max_s": reconnect_max_s,
            "read_timeout_s": read_timeout_s,
        }
        self.onvif_resolver = onvif_resolver

    def _producer(self, stream: Stream) -> ThreadProducer:
        kind = stream.source.kind
        if kind in ("lavfi", "clock"):
            return SyntheticProducer(stream, **self._producer_args)
        resolve = self.onvif_resolver if kind == "onvif" else None
        return DemuxProducer(stream, resolve=resolve, **self._producer_args)

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

    def close(self) -> None:
        for stream_id in list(self.streams):
            self.remove(stream_id)
