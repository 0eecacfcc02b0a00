"""Run `python -m ipycam` but keep every socket on 127.0.0.1.

Usage: python ipycam_lo.py --config camera_config.json --source clip.mp4
(same CLI as `python -m ipycam`; config must contain "local_ip": "127.0.0.1")
"""

import re
import socket
import sys
from datetime import UTC, datetime

import ipycam.camera as cam_mod
import ipycam.discovery as disc_mod
import ipycam.onvif as onvif_mod
import ipycam.rtsp as rtsp_mod

LO = "127.0.0.1"

# 1. HTTP/ONVIF server: ipycam binds ('', onvif_port) -> force 127.0.0.1
_srv_init = cam_mod.ReusableThreadingTCPServer.__init__


def _srv_init_lo(self, addr, handler, *a, **kw):
    _srv_init(self, (LO, addr[1]), handler, *a, **kw)


cam_mod.ReusableThreadingTCPServer.__init__ = _srv_init_lo

# 2. Native RTSP server: default host "0.0.0.0" -> 127.0.0.1
_rtsp_init = rtsp_mod.NativeRTSPServer.__init__


def _rtsp_init_lo(self, port=8554, host=LO):
    _rtsp_init(self, port=port, host=LO)


rtsp_mod.NativeRTSPServer.__init__ = _rtsp_init_lo

# 3. WS-Discovery: socket stays bound to 0.0.0.0:3702 (needed to receive both
#    unicast and group traffic) but is pinned to lo, so the Hello/Bye multicasts
#    and ProbeMatch replies can only leave via loopback.
_disc_init = disc_mod.WSDiscoveryServer.__init__


def _disc_init_lo(self, onvif_service):
    _disc_init(self, onvif_service)
    self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LO))
    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")


disc_mod.WSDiscoveryServer.__init__ = _disc_init_lo

# 4. Optional: skip the aiortc WebRTC event-loop thread (not needed for RTSP/ONVIF tests)
cam_mod.is_webrtc_available = lambda: False

# 5. PTZ replies as ONVIF has them (ipycam 1.3.0 gets three things wrong, and any client
#    that reads the replies, not only ours, fails on them):
#    - its PTZ replies use the prefixes ptz: and tptz: without declaring them, so a
#      namespace-aware parser (lxml, hence zeep) cannot read GetStatus, GetPresets or
#      SetPreset;
#    - its GetStatus template leaves MoveStatus and UtcTime as unfilled placeholders;
#    - RemovePreset, which its PTZ controller implements, is missing from its SOAP dispatch.
PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"
service = onvif_mod.ONVIFService
_wrap_envelope = service._wrap_envelope
_handle_action = service.handle_action


def _wrap_declared(self, body: str) -> str:
    return _wrap_envelope(self, body).replace(
        "<s:Envelope ", f'<s:Envelope xmlns:ptz="{PTZ_NS}" xmlns:tptz="{PTZ_NS}" ', 1
    )


def _ptz_get_status(self, body: str) -> str:
    status = self.ptz.get_status()
    moving = "MOVING" if status["moving"] else "IDLE"
    reply = self._render(
        "ptz_get_status",
        pan=status["pan"],
        tilt=status["tilt"],
        zoom=status["zoom"],
        pan_tilt_status=moving,
        zoom_status=moving,
        utc_time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return self._wrap_envelope(reply)


def _handle_with_remove(self, action: str, body: str):
    if "RemovePreset" in action or (not action and re.search(r"<(\w+:)?RemovePreset[\s>]", body)):
        token = self._extract_xml_value(body, "PresetToken")
        if not (token and self.ptz.remove_preset(token)):
            return self.fault("No such preset")
        return self._wrap_envelope("<tptz:RemovePresetResponse/>")
    return _handle_action(self, action, body)


service._wrap_envelope = _wrap_declared
service.ptz_get_status = _ptz_get_status
service.handle_action = _handle_with_remove

if __name__ == "__main__":
    from ipycam.__main__ import main

    sys.argv[0] = "ipycam"
    sys.exit(main())
