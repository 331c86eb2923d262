"""Gives an ONNX model-zoo "light" model random weights, for the Rust tests.

usage: randomise_onnx.py LIGHT.onnx OUT.onnx SEED

The light models of PyPI's `onnx` package store every weight as a ConstantOfShape node
filling it with one value (0.02), so all channels are alike and an output computed with
them tells little. Each such node becomes a Constant of seeded random values: 4-D and 2-D
tensors (conv and linear weights) normal with variance 2 / fan-in, 1-D tensors (biases,
BatchNorm parameters and statistics) uniform in [0.5, 1.5], so that variances stay positive
and activations keep their scale through the depth of the network. A Softmax that makes
the graph's output is dropped (its input becomes the output): random logits saturate it to
0s and a 1, which would compare equal whatever came before.
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

source, target, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = onnx.load(source)
graph = model.graph
initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
rng = np.random.default_rng(seed)
nodes = []
for node in graph.node:
    if node.op_type != "ConstantOfShape":
        nodes.append(node)
        continue
    shape = [int(d) for d in initializers[node.input[0]]]
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        values = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    else:
        values = rng.uniform(0.5, 1.5, size=shape)
    tensor = numpy_helper.from_array(values.astype(np.float32), name=node.output[0] + "_value")
    nodes.append(helper.make_node("Constant", [], list(node.output), name=node.name, value=tensor))
outputs = {o.name for o in graph.output}
last = nodes[-1]
drop_softmax = last.op_type == "Softmax" and last.output[0] in outputs
del graph.node[:]
graph.node.extend(nodes)
if drop_softmax:
    inferred = onnx.shape_inference.infer_shapes(model).graph
    logits = next(v for v in inferred.value_info if v.name == last.input[0])
    graph.node.pop()
    graph.output[0].CopyFrom(logits)
onnx.save(model, target)
