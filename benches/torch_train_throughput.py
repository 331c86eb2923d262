#!/usr/bin/env python3
"""The same training step as examples/train_throughput.rs in PyTorch (CPU): the 28x28 zoo
network (VGG-8) and ResNet-56 with option-A shortcuts (3x32x32), batch 64, SGD with Nesterov
momentum, on 1 and 2 threads. Each result is a line `RESULT train NETWORK THREADS
IMAGES_PER_SEC` (benches/speed.sh reads them).

usage: torch_train_throughput.py [NETWORK]   (vgg8 or resnet56; both by default)"""

import sys
import time

import torch
import torch.nn.functional as F
from torch_models import resnet56, vgg8

networks = [("vgg8", vgg8, (64, 1, 28, 28), 40), ("resnet56", resnet56, (64, 3, 32, 32), 8)]
for name, make, shape, steps in [n for n in networks if sys.argv[1:2] in ([], [n[0]])]:
    for threads in [1, 2]:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = make()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        x, y = torch.rand(shape), torch.arange(64) % 10

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - start
        print(f"RESULT train {name} {threads} {64 * steps / seconds:.1f}", flush=True)
