#!/usr/bin/env python3
"""Writes data/fashion-mnist-subset: a seeded, class-balanced subset of Fashion-MNIST
(600 training and 100 test images per class) as gzipped IDX files, read from Debian's
dataset-fashion-mnist package. Run once; the output is committed with its licence."""

import gzip
import random
import struct
import sys
from pathlib import Path

SOURCE = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parent.parent / "data" / "fashion-mnist-subset"


def read(prefix):
    images = gzip.open(SOURCE / f"{prefix}-images-idx3-ubyte.gz").read()
    labels = gzip.open(SOURCE / f"{prefix}-labels-idx1-ubyte.gz").read()
    count, rows, cols = struct.unpack(">III", images[4:16])
    size = rows * cols
    return [(images[16 + i * size:16 + (i + 1) * size], labels[8 + i]) for i in range(count)], rows, cols


def write(prefix, samples, rows, cols):
    images = struct.pack(">IIII", 0x803, len(samples), rows, cols) + b"".join(s[0] for s in samples)
    labels = struct.pack(">II", 0x801, len(samples)) + bytes(s[1] for s in samples)
    # mtime=0 keeps the files byte-identical from run to run.
    (OUT / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images, 9, mtime=0))
    (OUT / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels, 9, mtime=0))


def subset(samples, per_class, rng):
    chosen = []
    for label in range(10):
        of_class = [s for s in samples if s[1] == label]
        chosen += rng.sample(of_class, per_class)
    rng.shuffle(chosen)
    return chosen


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2024)
    for prefix, per_class in (("train", 600), ("t10k", 100)):
        samples, rows, cols = read(prefix)
        write(prefix, subset(samples, per_class, rng), rows, cols)


if __name__ == "__main__":
    main()
