"""The PyTorch twins of sacp's zoo networks the speed benchmarks use: VGG-8 for 1x28x28
(models/vgg8_fashion_mnist.toml) and ResNet-56 with option-A shortcuts for 3x32x32
(models/resnet56_cifar10.toml). Imported by torch_candidates.py and torch_train_throughput.py."""
import torch.nn as nn
import torch.nn.functional as F


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


def resnet56():
    layers, c = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for i, w in enumerate([16, 32, 64]):
        for b in range(9):
            layers.append(Block(c, w, 2 if i > 0 and b == 0 else 1))
            c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
