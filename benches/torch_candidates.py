#!/usr/bin/env python3
"""PyTorch + Torch-Pruning's side of benches/speed.sh: the candidate evaluation loop of
examples/search_bench.rs (`throughput`) in PyTorch on the CPU.

For each candidate: copy the base network, prune it with Torch-Pruning (L1 magnitude, one
ratio per stage drawn from {0, 0.25, 0.5, 0.75}, seeded), recalibrate BatchNorm on 10
batches of 64 (running statistics reset, cumulative average, as sacp's recalibration), then
top-1 on 8 held-out batches of 64. The images are tensors made once, before timing (sacp's
side decodes them once per search too). Networks: sacp's VGG-8 for 1x28x28 and ResNet-56
with option-A shortcuts for 3x32x32, random weights. Prints candidates per minute on 1 and
2 threads, one line per network and thread count: `RESULT candidates NETWORK THREADS
PER_MINUTE`.

usage: torch_candidates.py [CANDIDATES_VGG] [CANDIDATES_RESNET]   (0 skips that network)
Needs `pip install torch torch-pruning`.
"""
import copy
import random
import sys
import time

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_models import Block, resnet56, vgg8


def stages(model):
    """The prunable layers grouped by stage (what sacp's per-stage clustering groups)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) == 6:  # VGG-8: two convs per resolution
        return [convs[0:2], convs[2:4], convs[4:6]]
    # ResNet-56: the inner convs of each stage (the residual channels stay, as option-A
    # shortcuts tie them across stages).
    inner = [m.c1 for m in model.modules() if isinstance(m, Block)]
    return [inner[0:9], inner[9:18], inner[18:27]]


def evaluate(base, example, calibration, heldout, rng):
    model = copy.deepcopy(base)
    levels = [0.0, 0.25, 0.5, 0.75]
    ratios = {}
    for stage in stages(model):
        r = rng.choice(levels)
        for conv in stage:
            ratios[conv] = r
    ignored = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m not in ratios]
    ignored += [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.0,
        pruning_ratio_dict=ratios,
        ignored_layers=ignored,
    )
    pruner.step()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for x in calibration:
            model(x)
        model.eval()
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in heldout)
    return correct


def main():
    counts = [int(a) for a in sys.argv[1:3]] + [8, 4][len(sys.argv[1:3]):]
    for (name, make, shape), count in zip(
        [("vgg8", vgg8, (1, 28, 28)), ("resnet56", resnet56, (3, 32, 32))], counts
    ):
        if count == 0:
            continue
        torch.manual_seed(0)
        base = make().eval()
        example = torch.randn(1, *shape)
        calibration = [torch.randn(64, *shape) for _ in range(10)]
        heldout = [(torch.randn(64, *shape), torch.arange(64) % 10) for _ in range(8)]
        for threads in [1, 2]:
            torch.set_num_threads(threads)
            rng = random.Random(0)
            evaluate(base, example, calibration, heldout, rng)  # warm-up
            start = time.perf_counter()
            for _ in range(count):
                evaluate(base, example, calibration, heldout, rng)
            per_minute = 60.0 * count / (time.perf_counter() - start)
            print(f"RESULT candidates {name} {threads} {per_minute:.1f}", flush=True)


if __name__ == "__main__":
    main()
