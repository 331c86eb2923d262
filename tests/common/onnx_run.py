"""Runs an ONNX model with ONNX Runtime for the Rust tests.

usage: onnx_run.py MODEL.onnx INPUT.bin N C H W OUTPUT.bin

INPUT.bin holds N*C*H*W little-endian float32 values; OUTPUT.bin receives the model's first
output as little-endian float32. The model is checked with onnx.checker first.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_path, input_path, n, c, h, w, output_path = sys.argv[1:8]
model = onnx.load(model_path)
onnx.checker.check_model(model, full_check=True)
x = np.fromfile(input_path, dtype="<f4").reshape(int(n), int(c), int(h), int(w))
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
(y,) = session.run(None, {session.get_inputs()[0].name: x})[:1]
np.asarray(y, dtype="<f4").tofile(output_path)
