"""The application's shared state, one typed key each (aiohttp's AppKey pattern)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from aiohttp import web

from gridwatch.contracts.evidence import EvidenceStore
from gridwatch.dispatch.alerts import Alerts
from gridwatch.dispatch.grids import Grids
from gridwatch.dispatch.officers import Officers
from gridwatch.dispatch.service import Dispatch
from gridwatch.dispatch.tickets import TicketStore
from gridwatch.media.camera_state import StateBoard
from gridwatch.media.cameras import CameraStore
from gridwatch.media.hub import StreamHub
from gridwatch.media.nodes import NodeRegistry
from gridwatch.media.onvif import Onvif
from gridwatch.media.placement import Placement
from gridwatch.media.publish import Publishers
from gridwatch.media.published import PublishedStreams
from gridwatch.media.relay import Relays
from gridwatch.media.rtmp import RtmpIngest
from gridwatch.media.webrtc import Viewers
from gridwatch.recordings.service import Recordings
from gridwatch.signaling.auth import PasswordChecks, Tokens
from gridwatch.signaling.basemap import BaseMap
from gridwatch.signaling.calls import Calls
from gridwatch.signaling.config import Config
from gridwatch.signaling.metrics import Metrics
from gridwatch.signaling.presence import Presence
from gridwatch.signaling.sockets import Sockets

if TYPE_CHECKING:  # node_auth reads its keys from here
    from gridwatch.signaling.node_auth import NodeTokens

CONFIG = web.AppKey("config", Config)
REDIS = web.AppKey("redis", aioredis.Redis)
FRAMES = web.AppKey("frames", aioredis.Redis)  # the detection frame bus: REDIS unless redis.frames_url
HUB = web.AppKey("hub", StreamHub)
CAMERAS = web.AppKey("cameras", CameraStore)
VIEWERS = web.AppKey("viewers", Viewers)
PUBLISHERS = web.AppKey("publishers", Publishers)
RTMP = web.AppKey("rtmp", RtmpIngest)
TOKENS = web.AppKey("tokens", Tokens)
PASSWORDS = web.AppKey("passwords", PasswordChecks)
METRICS = web.AppKey("metrics", Metrics)
ONVIF = web.AppKey("onvif", Onvif)
TICKETS = web.AppKey("tickets", TicketStore)
OFFICERS = web.AppKey("officers", Officers)
DISPATCH = web.AppKey("dispatch", Dispatch)
SOCKETS = web.AppKey("sockets", Sockets)
EVIDENCE = web.AppKey("evidence", EvidenceStore)
PRESENCE = web.AppKey("presence", Presence)
CALLS = web.AppKey("calls", Calls)
RECORDINGS = web.AppKey("recordings", Recordings)
ALERTS = web.AppKey("alerts", Alerts)
GRIDS = web.AppKey("grids", Grids)
MAP = web.AppKey("map", BaseMap)
NODES = web.AppKey("nodes", NodeRegistry)
PLACEMENT = web.AppKey("placement", Placement)
NODE_TOKENS: web.AppKey[NodeTokens] = web.AppKey("node_tokens")  # /internal routes (signaling/node_auth)
STATE_BOARD = web.AppKey("state_board", StateBoard)
PUBLISHED = web.AppKey("published", PublishedStreams)  # where pushed streams are published
RELAYS = web.AppKey("relays", Relays)  # streams this node relays from their owner, and serves
