"""Graph rewrites before fusion: inference BatchNormalization folded into the convolution that
feeds it (scale the weights, shift the bias), when both are constant."""

import numpy as np

from .graph import Graph


def fold_batchnorm_into_conv(graph: Graph) -> int:
    producers, consumers = graph.producers(), graph.consumers()
    folded = 0
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        conv = producers.get(bn.inputs[0])
        if conv is None or conv.op != "Conv" or len(consumers[bn.inputs[0]]) != 1:
            continue
        params = [graph.value(i).const for i in bn.inputs[1:5]]
        w = graph.value(conv.inputs[1]).const
        if w is None or any(p is None for p in params) or w.dtype.kind != "f":
            continue
        has_bias = len(conv.inputs) > 2 and conv.inputs[2]
        bias = graph.value(conv.inputs[2]).const if has_bias else np.zeros(w.shape[0], w.dtype)
        if bias is None:
            continue
        scale, b, mean, var = (p.astype(np.float64) for p in params)
        k = scale / np.sqrt(var + bn.attr("epsilon", 1e-5))
        w2 = (w.astype(np.float64) * k.reshape(-1, *[1] * (w.ndim - 1))).astype(w.dtype)
        b2 = ((bias.astype(np.float64) - mean) * k + b).astype(w.dtype)
        wn, bn_name = f"{conv.name}.w_bn", f"{conv.name}.b_bn"
        graph.add_value(wn, const=w2)
        graph.add_value(bn_name, const=b2)
        conv.inputs = [conv.inputs[0], wn, bn_name]
        conv.outputs = [bn.outputs[0]]
        graph.nodes.remove(bn)
        folded += 1
    graph.remove_dead()
    return folded
