"""Writes a small ONNX classifier that uses the operators PyTorch's exporters emit around
CNN layers, for the Rust import tests.

usage: make_onnx_ops.py OUT.onnx OPSET EXTERNAL(0|1)

Input `input.1` (1×3×18×18, the legacy exporter's default name), output `logits`:
Conv (no bias) → Mul by a per-channel Constant [1, C, 1, 1] → Add of a Constant bias →
BatchNormalization → Sub of a per-channel initializer [C, 1, 1] → Relu → MaxPool 3/2 with
ceil_mode (18 → 9, not 8) → AveragePool 3/2 padded top and left only, with ceil_mode
(9 → 5, not 4; the last window overruns the input) and padding excluded from the divisor → LRN → Conv whose weights come from ConstantOfShape + Mul (folded) → ReduceMean
over H, W (axes as an attribute before opset 18, as an input from 18) without keepdims →
Gemm → Div by a scalar → Softmax. With EXTERNAL=1 the initializers are written to
OUT.onnx.data, as PyTorch's default exporter does.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

path, opset, external = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
rng = np.random.default_rng(3)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def const(name, array, dtype=np.float32):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array, dtype=dtype), name + "_t"))


c, d = 8, 6
initializers = [
    init("conv1.weight", rng.normal(0, 0.3, (c, 3, 3, 3))),
    init("bn.weight", rng.uniform(0.5, 1.5, c)),
    init("bn.bias", rng.normal(0, 0.2, c)),
    init("bn.running_mean", rng.normal(0, 0.2, c)),
    init("bn.running_var", rng.uniform(0.5, 1.5, c)),
    init("shift", rng.normal(0, 0.2, (c, 1, 1))),
    init("fc.weight", rng.normal(0, 0.3, (5, d))),
    init("fc.bias", rng.normal(0, 0.1, 5)),
]
nodes = [
    helper.make_node("Conv", ["input.1", "conv1.weight"], ["c1"], pads=[1, 1, 1, 1]),
    const("scale", rng.uniform(0.5, 1.5, (1, c, 1, 1))),
    helper.make_node("Mul", ["c1", "scale"], ["m1"]),
    const("bias1", rng.normal(0, 0.1, (c,)).reshape(1, c, 1, 1)),
    helper.make_node("Add", ["bias1", "m1"], ["a1"]),
    helper.make_node("BatchNormalization", ["a1", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"], ["b1"]),
    helper.make_node("Sub", ["b1", "shift"], ["s1"]),
    helper.make_node("Relu", ["s1"], ["r1"]),
    helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 0], ceil_mode=1, count_include_pad=0),
    helper.make_node("LRN", ["p2"], ["n1"], size=3, alpha=0.01, beta=0.75, bias=1.5),
    const("w2_shape", [d, c, 1, 1], np.int64),
    helper.make_node("ConstantOfShape", ["w2_shape"], ["w2_ones"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
    const("w2_scale", rng.normal(0, 0.5, (d, c, 1, 1))),
    helper.make_node("Mul", ["w2_ones", "w2_scale"], ["w2"]),
    helper.make_node("Conv", ["n1", "w2"], ["c2"]),
]
if opset >= 18:
    nodes += [const("axes", [2, 3], np.int64), helper.make_node("ReduceMean", ["c2", "axes"], ["g1"], keepdims=0)]
else:
    nodes += [helper.make_node("ReduceMean", ["c2"], ["g1"], axes=[-2, -1], keepdims=0)]
nodes += [
    helper.make_node("Gemm", ["g1", "fc.weight", "fc.bias"], ["f1"], transB=1),
    const("two", 2.0),
    helper.make_node("Div", ["f1", "two"], ["f2"]),
    helper.make_node("Softmax", ["f2"], ["logits"], axis=1),
]
graph = helper.make_graph(
    nodes,
    "ops",
    [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 18, 18])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])],
    initializers,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
model.ir_version = 8
onnx.checker.check_model(model, full_check=True)
if external:
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=path.split("/")[-1] + ".data", size_threshold=0)
else:
    onnx.save(model, path)
