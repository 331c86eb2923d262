"""Saves a torchvision network's state dict as PyTorch and safetensors files, with its output
on one input, for the Rust tests.

usage: save_state_dict.py OUT_DIR NAME SIZE

Writes OUT_DIR/NAME.pth (`torch.save(model.state_dict())`, `num_batches_tracked` buffers
included), OUT_DIR/NAME.safetensors (the same tensors, written by hand: the `safetensors`
package is not needed; the int64 buffers stay I64), OUT_DIR/input.bin (1×3×SIZE×SIZE
float32, seeded normal) and OUT_DIR/output.bin (the model's eval-mode output, float32).
Random weights (seeded) with non-trivial BatchNorm statistics.
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from torchvision_models import make

out_dir, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = make(name)
state = model.state_dict()
torch.save(state, os.path.join(out_dir, f"{name}.pth"))

header, blobs, offset = {}, [], 0
for key, tensor in state.items():
    array = tensor.detach().cpu().numpy()
    dtype = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[array.dtype]
    blob = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    header[key] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
    blobs.append(blob)
    offset += len(blob)
encoded = json.dumps(header).encode()
encoded += b" " * (-len(encoded) % 8)
with open(os.path.join(out_dir, f"{name}.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(encoded)))
    f.write(encoded)
    for blob in blobs:
        f.write(blob)

x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    y = model(x)
x.numpy().astype("<f4").tofile(os.path.join(out_dir, "input.bin"))
y.numpy().astype("<f4").tofile(os.path.join(out_dir, "output.bin"))
