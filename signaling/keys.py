"""The application's shared state, one typed key each (aiohttp's AppKey pattern)."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from dispatch.alerts import Alerts
from dispatch.evidence import EvidenceStore
from dispatch.grids import Grids
from dispatch.officers import Officers
from dispatch.service import Dispatch
from dispatch.tickets import TicketStore
from media.hub import StreamHub
from media.onvif import Onvif
from media.publish import Publishers
from media.rtmp import RtmpIngest
from media.webrtc import Viewers
from recordings.service import Recordings
from signaling.auth import PasswordChecks, Tokens
from signaling.basemap import BaseMap
from signaling.calls import Calls
from signaling.cameras import CameraStore
from signaling.config import Config
from signaling.metrics import Metrics
from signaling.presence import Presence
from signaling.sockets import Sockets

CONFIG = web.AppKey("config", Config)
REDIS = web.AppKey("redis", aioredis.Redis)
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
