"""Exports torchvision networks to ONNX with both PyTorch exporters, for the Rust tests.

usage: export_torchvision.py OUT_DIR SIZE NAME[,NAME...] [CLASSES]

For each torchvision model NAME (random weights, seeded): every BatchNorm gets non-trivial
statistics and affine terms (running mean in [-0.2, 0.2], variance and scale in [0.5, 1.5],
shift in [-0.2, 0.2]), the model is put in eval mode and exported for a 1×3×SIZE×SIZE
input twice: OUT_DIR/NAME_legacy.onnx (`dynamo=False`, the TorchScript exporter, default
input name `input.1`) and OUT_DIR/NAME_dynamo.onnx (`dynamo=True`, the default exporter,
weights in the external file NAME_dynamo.onnx.data). vgg11_bn is exported at 224×224
whatever SIZE is (its adaptive pooling to 7×7 needs it). CLASSES (default 1000) sets the
classifier's outputs.
"""
import os
import sys
import warnings

import torch
from torchvision_models import make

warnings.filterwarnings("ignore")
out_dir, size, names = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
classes = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
for name in names:
    model = make(name, classes)
    side = 224 if name.startswith("vgg") else size
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        torch.onnx.export(model, (x,), os.path.join(out_dir, f"{name}_legacy.onnx"), dynamo=False)
        # The dynamo exporter prints its progress on stdout; the test reads stderr on failure.
        stdout = sys.stdout
        sys.stdout = open(os.devnull, "w")
        try:
            torch.onnx.export(model, (x,), os.path.join(out_dir, f"{name}_dynamo.onnx"), dynamo=True)
        finally:
            sys.stdout.close()
            sys.stdout = stdout
