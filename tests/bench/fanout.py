"""Fan-out: one H.264 camera to many WHEP viewers, pass-through against per-viewer encode.

    .venv/bin/python tests/bench/fanout.py [--counts 1,10,50,100,200] [--seconds 10]

Prints, for each viewer count, the server's CPU (cores, by /proc accounting), the
marginal CPU per viewer, and the frames each viewer received against the frames the
camera sent; then the same for a naive aiortc server (decode once, encode per viewer)
measured in the same run, and the ratio between the two per-viewer costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CpuMeter, camera_args, ratio, start_camera, start_gridwatch

from support.procs import free_port, stop, wait_port

HERE = Path(__file__).resolve().parent


def run_viewers(
    base: str, stream: str, token: str, n: int, seconds: float, server_pid: int
) -> dict:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "viewers.py"), base, stream, token, str(n), str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout and proc.stdin
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError("viewers did not start")
        server, clients = CpuMeter(server_pid), CpuMeter(proc.pid)
        server.start()
        clients.start()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = json.loads(proc.stdout.readline())
        result["server_cores"] = server.stop()
        result["client_cores"] = clients.stop()
        return result
    finally:
        stop(proc)


def measure(label: str, base: str, token: str, pid: int, counts: list[int], args) -> list[dict]:
    expected = args.fps * args.seconds
    rows = []
    for n in counts:
        r = run_viewers(base, "cam", token, n, args.seconds, pid)
        frames = r["frames"]
        row = {
            "server": label,
            "viewers": n,
            "server_cores": r["server_cores"],
            "client_cores": r["client_cores"],
            "frames_median": statistics.median(frames),
            "frames_min": min(frames),
            "received": statistics.mean(frames) / expected,
        }
        rows.append(row)
        print(
            f"{label:12} viewers={n:4d} server={row['server_cores']:.3f} cores "
            f"clients={row['client_cores']:.2f} cores frames/viewer median={row['frames_median']:.0f} "
            f"min={row['frames_min']} of {expected:.0f} ({row['received']:.1%})",
            flush=True,
        )
    return rows


def per_viewer(rows: list[dict]) -> float:
    """Marginal cores per extra viewer, between the first and the largest count served in full.

    Past saturation the server sheds frames and its CPU stops growing, which would
    make the marginal cost look smaller than it is.
    """
    served = [r for r in rows if r["received"] >= 0.99] or rows[:1]
    a, b = served[0], served[-1]
    if b["viewers"] == a["viewers"]:
        return a["server_cores"] / a["viewers"]
    return (b["server_cores"] - a["server_cores"]) / (b["viewers"] - a["viewers"])


def main() -> None:
    p = argparse.ArgumentParser()
    camera_args(p, "1,10,50,100,200")
    p.add_argument("--naive-counts", default="1,2")
    args = p.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    print(f"camera: {w}x{h} {args.fps} fps {args.kbps} kbit/s H.264 over RTSP", flush=True)
    camera = start_camera(w, h, args.fps, args.kbps)
    url = camera.url("/cam")
    workdir = Path(tempfile.mkdtemp(prefix="gw-fanout-"))
    # No egress limit: the benchmark measures past the point where a node would refuse.
    media = {"viewer_queue": 512, "max_egress_mbps": None}
    gw = start_gridwatch(workdir, [{"id": "cam", "source": url}], media=media)
    naive = None
    try:
        token = gw.token("viewer")
        ours = measure(
            "gridwatch", gw.base, token, gw.proc.pid, [int(c) for c in args.counts.split(",")], args
        )
        m = gw.metrics()
        work = {
            k: m.get(f'gridwatch_stream_{k}_total{{stream="cam"}}')
            for k in ("decoded_frames", "encoded_frames", "dropped")
        }
        print(f"gridwatch: {work}", flush=True)
        gw.stop()
        port = free_port()
        naive = subprocess.Popen([sys.executable, str(HERE / "naive_server.py"), str(port), url])
        wait_port(port, 30)
        base = f"http://127.0.0.1:{port}"
        theirs = measure(
            "naive", base, "-", naive.pid, [int(c) for c in args.naive_counts.split(",")], args
        )
    finally:
        gw.stop()
        stop(naive)
        camera.stop()
    ours_pv, theirs_pv = per_viewer(ours), per_viewer(theirs)
    print(
        f"\nper-viewer CPU: gridwatch {ours_pv * 100:.2f}% of a core, "
        f"naive (encode per viewer) {theirs_pv * 100:.1f}% of a core; "
        f"naive/gridwatch = {ratio(theirs_pv, ours_pv)}"
    )
    full = [r for r in ours if r["received"] >= 0.99]
    print(
        f"largest viewer count with >= 99% of frames delivered: {max((r['viewers'] for r in full), default=0)}"
    )


if __name__ == "__main__":
    main()
