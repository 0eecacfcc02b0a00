"""Train the demo detector (vehicle, person, stall) on composed street scenes, on CPU.

    .venv/bin/python -m gridwatch.detectors.train_demo --out detectors/models/gridwatch-demo.pt

Reproducible (fixed seed): writes the dataset, trains YOLOv8n from its .yaml (no
pretrained weights exist here) and copies the best weights to --out, printing the
validation mAP. Takes about 20 minutes on two cores; run it in the background.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
from pathlib import Path

import cv2

from gridwatch.detectors.scenes import CLASSES, SIZE, TRAIN_FRAMES, random_scene, street_frames

os.environ.setdefault("YOLO_OFFLINE", "1")


def write_dataset(root: Path, n_train: int, n_val: int, seed: int) -> Path:
    rng = random.Random(seed)
    frames = street_frames()[:TRAIN_FRAMES]  # the rest stay unseen, for the scenario tests
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, labels = random_scene(rng, frames)
            cv2.imwrite(str(root / "images" / split / f"{i:05d}.jpg"), img)
            w, h = SIZE
            lines = [
                f"{c} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} {(b[2] - b[0]) / w:.6f} {(b[3] - b[1]) / h:.6f}"
                for c, b in labels
            ]
            (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return data


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("detectors/models/gridwatch-demo.pt"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--train", type=int, default=300)
    p.add_argument("--val", type=int, default=60)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    from ultralytics import YOLO

    work = Path(tempfile.mkdtemp(prefix="gw-train-"))
    data = write_dataset(work / "data", args.train, args.val, args.seed)
    model = YOLO("yolov8n.yaml")
    model.train(
        data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=16, workers=2, device="cpu",
        plots=False, amp=False, seed=args.seed, deterministic=True, project=str(work), name="run",
        exist_ok=True, verbose=False,
    )  # fmt: skip
    best = work / "run" / "weights" / "best.pt"
    metrics = YOLO(str(best)).val(
        data=str(data), imgsz=args.imgsz, device="cpu", plots=False, verbose=False
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(best, args.out)
    print(f"weights: {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    print(f"validation mAP50 {metrics.box.map50:.3f}, mAP50-95 {metrics.box.map:.3f}")
    for i, name in enumerate(CLASSES):
        print(f"  {name}: mAP50 {metrics.box.ap50[i]:.3f}")


if __name__ == "__main__":
    main()
