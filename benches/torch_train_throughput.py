#!/usr/bin/env python3
"""The same training step as benches/train_throughput.rs in PyTorch (CPU): the 28x28 zoo
network (VGG-8) and ResNet-20 with option-A shortcuts, batch 64, SGD with Nesterov momentum."""

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


def vgg8():
    layers, c = [], 1
    for v in [32, 32, "M", 64, 64, "M", 128, 128, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
            c = v
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(1152, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.pad = (cout - cin) // 2 if cin != cout else None
        self.stride = stride

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        s = x if self.pad is None else F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(y + s)


def resnet20():
    layers, c = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for i, w in enumerate([16, 32, 64]):
        for b in range(3):
            layers.append(Block(c, w, 2 if i > 0 and b == 0 else 1))
            c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


for name, model, shape, steps in [("vgg8_fashion_mnist", vgg8(), (64, 1, 28, 28), 20), ("resnet20_cifar10", resnet20(), (64, 3, 32, 32), 10)]:
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
    print(f"pytorch-cpu {name}: {1e3 * seconds / steps:.1f} ms per step, {64 * steps / seconds:.0f} images/s (threads {torch.get_num_threads()})")
