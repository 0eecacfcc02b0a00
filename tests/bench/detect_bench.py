"""Detection costs on this CPU: decode modes, YOLO input sizes, the motion gate, and
cameras per 2 cores for the gated pipeline against the naive one.

    .venv/bin/python tests/bench/detect_bench.py [--seconds 10]

Measured in this run: decoding a 1080p30 camera (every frame / key frames only) and a
640x360 sub-stream; YOLOv8n at 320 and 640 (speed does not depend on the weights, so
a model built from yolov8n.yaml serves); the motion gate and the JPEG hop through
Redis. Cameras per 2 cores are computed from those figures: naive = decode every
frame + YOLO at 640 on every sampled frame; gridwatch = key frames only + JPEG + gate
+ YOLO at 320 only on frames that moved (shown for several motion shares) plus one
re-check every 5 s; above 1 fps gridwatch decodes every frame of a 640x360 sub-stream.
"""

from __future__ import annotations

import argparse
import os
import time

import av
import cv2
import numpy as np
from common import camera_file, ratio

from gridwatch.detectors.motion import ZoneGate

os.environ.setdefault("YOLO_OFFLINE", "1")


def decode_cost(path, keyframes_only: bool, seconds: float) -> float:
    """CPU seconds to decode one second of the video."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        if keyframes_only:
            s.codec_context.skip_frame = "NONKEY"
        fps = float(s.average_rate)
        frames, t0 = 0, time.process_time()
        for packet in c.demux(s):
            for _ in packet.decode():
                pass
            if packet.pts is not None and float(packet.pts * s.time_base) >= seconds:
                break
            frames += 1
        return (time.process_time() - t0) / (frames / fps)


def per_call(fn, n: int) -> float:
    fn()
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    main_cam = camera_file(1920, 1080, 30, 4000)
    sub_cam = camera_file(640, 360, 30, 600)
    all_frames = decode_cost(main_cam, False, args.seconds)
    key_only = decode_cost(main_cam, True, args.seconds)
    sub_all = decode_cost(sub_cam, False, args.seconds)
    print(f"decode, cores per camera: 1080p every frame {all_frames:.3f} | key frames only {key_only:.4f} "
          f"({ratio(all_frames, key_only)} less) | 360p sub-stream every frame {sub_all:.3f} "
          f"({ratio(all_frames, sub_all)} less)", flush=True)  # fmt: skip

    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    frame = cv2.resize(cv2.imread(str(next(iter(_assets())))), (1280, 720))
    yolo = {size: per_call(lambda s=size: model.predict(frame, imgsz=s, device="cpu", verbose=False), args.runs)
            for size in (320, 640)}  # fmt: skip
    print(f"YOLOv8n on this CPU: 320 {yolo[320] * 1000:.1f} ms/frame, 640 {yolo[640] * 1000:.1f} ms/frame "
          f"(640/320 = {ratio(yolo[640], yolo[320])})", flush=True)  # fmt: skip
    gate = ZoneGate([], (1280, 720))
    gate_cost = per_call(lambda: gate.look(frame), 200)
    jpeg = cv2.imencode(".jpg", cv2.resize(frame, (640, 360)))[1].tobytes()
    hop = (
        per_call(lambda: cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), 200) * 2
    )  # + encode
    print(
        f"motion gate {gate_cost * 1000:.2f} ms/frame; JPEG hop ~{hop * 1000:.2f} ms/frame",
        flush=True,
    )

    for fps in (1, 2):
        naive = all_frames + fps * yolo[640]
        # Above one frame a second key frames are too rare: every frame of the sub-stream is decoded.
        decode = key_only if fps <= 1 else sub_all
        print(
            f"\n{fps} detect fps: naive pipeline {naive:.3f} cores/camera -> {2 / naive:.1f} cameras per 2 cores"
        )
        for share in (1.0, 0.3, 0.1):
            ours = decode + fps * (hop + gate_cost + share * yolo[320]) + yolo[320] / 5
            print(f"  gridwatch, motion in {share:.0%} of frames: {ours:.4f} cores/camera -> "
                  f"{2 / ours:.1f} cameras per 2 cores ({ratio(naive, ours)} the naive pipeline)")  # fmt: skip


def _assets():
    import ultralytics

    root = os.path.join(os.path.dirname(ultralytics.__file__), "assets")
    return sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".jpg"))


if __name__ == "__main__":
    main()
