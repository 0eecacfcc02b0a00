"""Run `python -m ipycam` but keep every socket on 127.0.0.1.

Usage: python ipycam_lo.py --config camera_config.json --source clip.mp4
(same CLI as `python -m ipycam`; config must contain "local_ip": "127.0.0.1")
"""

import socket
import sys

import ipycam.camera as cam_mod
import ipycam.discovery as disc_mod
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

if __name__ == "__main__":
    from ipycam.__main__ import main

    sys.argv[0] = "ipycam"
    sys.exit(main())
