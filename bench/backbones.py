"""Benchmark: frozen-backbone features per second, EfficientNet-Lite0 (torch) against ResNet50 (Keras).

Both run the feature cache's own call (`build_backbone(...).predict_on_batch` on batches the
`InputPipeline` made, the spec's preprocessing included) on the same images at the same input size,
in this one process, after one warm-up batch, with `--threads` threads for torch and TensorFlow alike
(1 by default: per-core throughput, which other work on the machine disturbs least). ResNet50 is random-init (`--weights none`: its ImageNet
file cannot be downloaded here), which costs the same arithmetic as its ImageNet weights. Prints
images/s and the ratio; writes OUT/bench_backbones.json.

    python bench/backbones.py                   # 64 images, 224 px, batch 32, 1 thread
    python bench/backbones.py --threads 2 --images 128
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def throughput(name: str, weights: str, images: int, size: int, batch_size: int, folder: Path) -> dict:
    from PIL import Image

    from augstudy.classify.backbones import backbone_spec, build_backbone, parse_weights
    from augstudy.classify.features import ImageRef, InputPipeline
    from augstudy.classify.images import ViewParams
    from augstudy.classify.toydata import toy_image

    refs = []
    for index in range(images):
        path = folder / f"{index:04d}.png"
        if not path.exists():
            Image.fromarray(toy_image(index % 2, index, 64)).save(path)
        refs.append(ImageRef(path, f"{index:064x}"))
    spec = backbone_spec(name)
    pipeline = InputPipeline(size, spec.preprocess(), ViewParams())
    batches = [pipeline.batch(refs[start:start + batch_size]) for start in range(0, images, batch_size)]
    backbone = build_backbone(spec, parse_weights(weights, spec), size)
    backbone.predict_on_batch(batches[0])  # warm-up: graph building, allocator
    started = time.perf_counter()
    dim = 0
    for batch in batches:
        dim = np.asarray(backbone.predict_on_batch(batch)).shape[1]
    seconds = time.perf_counter() - started
    return {"backbone": name, "weights": weights, "images": images, "seconds": seconds,
            "images_per_second": images / seconds, "feature_dim": dim}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch and TensorFlow intra-op threads")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench_backbones")
    args = parser.parse_args()
    import tensorflow as tf
    import torch

    torch.set_num_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.out / "images"
    folder.mkdir(exist_ok=True)
    rows = [throughput(name, weights, args.images, args.size, args.batch, folder)
            for name, weights in (("efficientnet-lite0", "imagenet"), ("resnet50", "none"))]
    ratio = rows[0]["images_per_second"] / rows[1]["images_per_second"]
    for row in rows:
        print(f"{row['backbone']:>20} ({row['weights']}): {row['images_per_second']:6.1f} images/s "
              f"({row['feature_dim']}-d, {row['images']} images in {row['seconds']:.1f} s)")
    print(f"efficientnet-lite0 / resnet50: {ratio:.1f}x the features per second "
          f"({args.size} px, batch {args.batch}, {args.threads} thread(s), {os.cpu_count()} CPU cores)")
    (args.out / "bench_backbones.json").write_text(json.dumps(
        {"size": args.size, "batch": args.batch, "threads": args.threads, "cpu_count": os.cpu_count(), "rows": rows, "ratio": ratio},
        indent=2))


if __name__ == "__main__":
    main()
