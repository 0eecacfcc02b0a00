"""Train the demo detector (vehicle, person, stall) on CPU, and judge it on real pictures.

    git show a47df65:detectors/models/gridwatch-demo.pt > /tmp/gridwatch-demo-v1.pt
    YOLO_OFFLINE=1 .venv/bin/python -m gridwatch.detectors.train_demo \\
        --init /tmp/gridwatch-demo-v1.pt --out detectors/models/gridwatch-demo.pt

Reproducible (seed 7, deterministic): writes the dataset, fine-tunes the first demo
model (the weights shipped before issue 17, themselves trained from yolov8n.yaml by this
script's earlier version; `--init yolov8n.yaml` trains from scratch instead, slower to
converge) and copies the best weights to --out. Training data (`real.py`): composed
scenes on the empty street where every real object is labelled (its parked van and car,
its real walkers put back), plus whole real pictures labelled by hand, each repeated
--repeat times; Ultralytics' own augmentation (mosaic, scale, HSV, flips) on top.

Then it prints mAP50 on the real validation set: pictures and vtest.avi frames that no
training image contains, labelled by hand (`real.VAL_PICTURES`, `real.VAL_FRAMES`).
`--evaluate WEIGHTS` prints only that. About 24 minutes on two shared cores (30 epochs).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
from pathlib import Path

import cv2

from gridwatch.detectors import real
from gridwatch.detectors.scenes import CLASSES

os.environ.setdefault("YOLO_OFFLINE", "1")


def _write(root: Path, split: str, name: str, img, labels) -> None:
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), img)
    h, w = img.shape[:2]
    lines = [
        f"{c} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} {(b[2] - b[0]) / w:.6f} {(b[3] - b[1]) / h:.6f}"
        for c, b in labels
    ]
    (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")


def _yaml(root: Path, val: str) -> Path:
    data = root / f"data-{val}.yaml"
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/{val}\nnames:\n{names}\n")
    return data


def write_dataset(root: Path, n_train: int, n_val: int, repeat: int, seed: int) -> Path:
    """Training set (composed clean scenes + repeated real pictures) and a composed
    validation split for Ultralytics' checkpoint choice; returns its data.yaml."""
    rng = random.Random(seed)
    for i in range(n_train):
        _write(root, "train", f"scene{i:05d}", *real.clean_scene(rng))
    for name, labels in real.TRAIN_PICTURES:
        img = real.picture(name)
        for k in range(repeat):
            _write(root, "train", f"{Path(name).stem}-{k}", img, labels)
    for i in range(n_val):
        _write(root, "scenes", f"scene{i:05d}", *real.clean_scene(rng))
    write_real_val(root)
    return _yaml(root, "scenes")


def write_real_val(root: Path, which: str = "real") -> Path:
    """The real validation set as a split of its own: "real" (all of it), "pictures"
    (real.VAL_PICTURES: other places, cameras and vehicles) or "vtest" (the held-out
    frames of the training street); returns its data.yaml."""
    for name, img, labels in real.val_items():
        if which == "real" or which == ("vtest" if name.startswith("vtest-") else "pictures"):
            _write(root, which, Path(name).stem, img, labels)
    return _yaml(root, which)


def evaluate(weights: Path, imgsz: int, root: Path | None = None) -> None:
    """Print mAP50 (overall, per class present) of `weights` on the real validation set,
    and on its two parts."""
    from ultralytics import YOLO

    root = root or Path(tempfile.mkdtemp(prefix="gw-realval-"))
    for which in ("real", "pictures", "vtest"):
        data = write_real_val(root, which)
        n = len(list((root / "images" / which).glob("*.jpg")))
        if not n:
            print(f"{which}: no labelled pictures")
            continue
        m = YOLO(str(weights)).val(
            data=str(data), imgsz=imgsz, device="cpu", plots=False, verbose=False, batch=8
        )
        print(f"{which} validation ({n} pictures, imgsz {imgsz}): mAP50 {m.box.map50:.3f}, "
              f"mAP50-95 {m.box.map:.3f}, precision {m.box.mp:.3f}, recall {m.box.mr:.3f}")  # fmt: skip
        for k, c in enumerate(m.box.ap_class_index):
            print(f"  {CLASSES[int(c)]}: mAP50 {m.box.ap50[k]:.3f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("detectors/models/gridwatch-demo.pt"))
    p.add_argument("--init", default="yolov8n.yaml", help="weights to start from")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--train", type=int, default=300)
    p.add_argument("--val", type=int, default=40)
    p.add_argument("--repeat", type=int, default=6)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--evaluate", type=Path, help="only print the real validation mAP of these")
    args = p.parse_args()
    if args.evaluate:
        for imgsz in (args.imgsz, 640):
            evaluate(args.evaluate, imgsz)
        return
    from ultralytics import YOLO

    work = Path(tempfile.mkdtemp(prefix="gw-train-"))
    data = write_dataset(work / "data", args.train, args.val, args.repeat, args.seed)
    model = YOLO(args.init)
    model.train(
        data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=16, workers=2, device="cpu",
        plots=False, amp=False, seed=args.seed, deterministic=True, project=str(work), name="run",
        exist_ok=True, verbose=False,
    )  # fmt: skip
    best = work / "run" / "weights" / "best.pt"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(best, args.out)
    print(f"weights: {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    for imgsz in (args.imgsz, 640):
        evaluate(args.out, imgsz, work / "data")


if __name__ == "__main__":
    main()
