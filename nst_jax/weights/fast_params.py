"""Flax parameters for ``nst_jax.fast.model`` from the two quantised graphs.

The graphs (Magenta's int8 TFLite models converted by tf2onnx) are full
QDQ: every Conv takes its weight (OIHW int8) and bias (int32) from a
DequantizeLinear of initializers, per output channel. For each Conv this
module follows those two inputs back to their DequantizeLinear, computes
``(q - zero_point) * scale`` and converts the result to Flax's layout:
OIHW -> HWIO (depthwise [C, 1, kh, kw] -> [kh, kw, 1, C]), and a 1x1 conv
applied to a 1x1 map (the style embedding's gamma/beta layers, the
predictor's last conv) -> a Dense kernel (in, out).

Layers are mapped by the Conv node's name (``MobilenetV2/expanded_conv_3/
depthwise/...``, ``style_params/transformer/residual/residual2/conv1/
StyleNorm/Conv_1/...``), never by the name of a weight tensor: tf2onnx
deduplicates equal constants, so zero points and all-zero biases are shared
between unrelated layers under arbitrary names. The activations' own
quantisation is not reproduced: the model computes in float.
"""

from __future__ import annotations

import re
from typing import Optional

import jax
import numpy as np

from nst_jax.errors import WeightsError
from nst_jax.fast import model
from nst_jax.weights.onnx import Graph, Node

Params = dict

# Conv node name -> parameter path in the predictor's tree.
_PREDICTOR_RULES = (
    (re.compile(r"MobilenetV2/(Conv|Conv_1)/"), lambda m: (m[1],)),
    (re.compile(r"MobilenetV2/(expanded_conv(?:_\d+)?)/"
                r"(expand|depthwise|project)/"), lambda m: (m[1], m[2])),
    (re.compile(r"mobilenet_conv/Conv/"), lambda m: ("bottleneck",)),
)
# StyleNorm/Conv_1 computes the norm's scale, StyleNorm/Conv its offset.
_NORM_PARAM = {"Conv_1": "gamma", "Conv": "beta"}
# Conv node name -> parameter path in the transformer's tree.
_TRANSFORMER_RULES = (
    (re.compile(r"transformer/contract/conv(\d+)/"),
     lambda m: (f"contract_conv{m[1]}",)),
    (re.compile(r"transformer/residual/residual(\d+)/conv(\d+)/"),
     lambda m: (f"residual{m[1]}", f"conv{m[2]}")),
    (re.compile(r"transformer/expand/conv(\d+)/conv/"),
     lambda m: (f"expand_conv{m[1]}",)),
    (re.compile(r"style_params/transformer/residual/residual(\d+)/"
                r"conv(\d+)/StyleNorm/(Conv_1|Conv)/"),
     lambda m: (f"residual{m[1]}", f"norm{m[2]}", _NORM_PARAM[m[3]])),
    (re.compile(r"style_params/transformer/expand/conv(\d+)/conv/"
                r"StyleNorm/(Conv_1|Conv)/"),
     lambda m: (f"expand_norm{m[1]}", _NORM_PARAM[m[2]])),
)


def dequantize(q: np.ndarray, scale: np.ndarray,
               zero_point: Optional[np.ndarray] = None,
               axis: int = 1) -> np.ndarray:
    """ONNX DequantizeLinear: ``(q - zero_point) * scale`` in float32.

    Args:
      q: the integer tensor.
      scale: a scalar (per tensor) or a 1-D array with one entry per index
        of ``q`` along ``axis`` (per channel).
      zero_point: same shape as ``scale``; None means 0.
      axis: the channel axis for a per-channel scale (ONNX's default is 1;
        the graphs' weights use 0).

    Returns:
      float32 array of ``q``'s shape.

    Raises:
      WeightsError: the scale's shape fits neither case.
    """
    q = np.asarray(q)
    scale = np.asarray(scale, np.float32)
    zp = np.zeros((), np.int64) if zero_point is None else np.asarray(
        zero_point)
    if scale.shape != zp.shape:
        raise WeightsError(f"zero point of shape {zp.shape} for a scale of "
                           f"shape {scale.shape}")
    if scale.ndim == 1:
        if not -q.ndim <= axis < q.ndim or q.shape[axis] != scale.size:
            raise WeightsError(f"{scale.size} scales along axis {axis} of "
                               f"a tensor of shape {q.shape}")
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    elif scale.ndim:
        raise WeightsError(f"scale of shape {scale.shape}: expected a "
                           f"scalar or one value per channel")
    # int64: an int32 bias minus its zero point must not wrap.
    diff = q.astype(np.int64) - zp.astype(np.int64)
    return diff.astype(np.float32) * scale


def _param_path(rules, conv_name: str) -> Optional[tuple[str, ...]]:
    for pattern, path in rules:
        match = pattern.match(conv_name)
        if match:
            return path(match)
    return None


def _dequantized(graph: Graph, producers: dict[str, Node], tensor: str,
                 conv: str, problems: list[str]) -> Optional[np.ndarray]:
    """The float value of a Conv input made by DequantizeLinear(init)."""
    dq = producers.get(tensor)
    args = dq.inputs if dq is not None else ()
    if (dq is None or dq.op_type != "DequantizeLinear" or len(args) < 2
            or not all(a in graph.initializers for a in args if a)):
        problems.append(f"{conv} input {tensor!r} is not a "
                        f"DequantizeLinear of constants")
        return None
    q, scale = (graph.initializers[a] for a in args[:2])
    zp = graph.initializers[args[2]] if len(args) > 2 and args[2] else None
    try:
        return dequantize(q, scale, zp, dq.attrs.get("axis", 1))
    except WeightsError as e:
        problems.append(f"{conv}: {e}")
        return None


def _to_flax(w_OIHW: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) == 2:  # A 1x1 conv of a 1x1 map is a Dense (in, out).
        if w_OIHW.shape[2:] != (1, 1):
            return w_OIHW  # Left for the shape check to report.
        return w_OIHW[:, :, 0, 0].T
    return w_OIHW.transpose(2, 3, 1, 0)


def _layers(abstract, prefix=()) -> dict[tuple[str, ...], dict]:
    """{layer path: {leaf name: shape}} for every layer with a kernel."""
    if "kernel" in abstract:
        return {prefix: {k: tuple(v.shape) for k, v in abstract.items()}}
    out = {}
    for k, v in abstract.items():
        out.update(_layers(v, prefix + (k,)))
    return out


def _conv_name(node: Node) -> str:
    # tf2onnx names each node after its output; fall back to that name.
    return node.name or (node.outputs[0] if node.outputs else "")


def _where(network: str, path: tuple[str, ...]) -> str:
    return "/".join((network,) + path)


def _layer_params(graph: Graph, producers: dict[str, Node], node: Node,
                  shapes: dict[str, tuple[int, ...]], where: str,
                  problems: list[str]) -> dict[str, np.ndarray]:
    """{"kernel": ..., "bias": ...} of one Conv node, as ``shapes`` asks."""
    leaves = {}
    for leaf, index in (("kernel", 1), ("bias", 2)):
        # A conv with no bias in the model (one before a norm) ignores the
        # graph's: it is zero, and the norm's mean would cancel it anyway.
        if leaf not in shapes:
            continue
        if len(node.inputs) <= index or not node.inputs[index]:
            problems.append(f"{_conv_name(node)} has no {leaf}")
            continue
        value = _dequantized(graph, producers, node.inputs[index],
                             _conv_name(node), problems)
        if value is None:
            continue
        if leaf == "kernel":
            value = _to_flax(value, shapes[leaf])
        if value.shape != shapes[leaf]:
            problems.append(f"{where}/{leaf} has shape {value.shape}, "
                            f"expected {shapes[leaf]}")
        elif not np.isfinite(value).all():
            problems.append(f"{where}/{leaf} holds NaN or inf")
        leaves[leaf] = np.ascontiguousarray(value, np.float32)
    return leaves


def _network_params(graph: Graph, rules, abstract, network: str,
                    problems: list[str]) -> Params:
    """One network's tree; appends what is wrong to ``problems``."""
    expected = _layers(abstract)
    producers = {o: n for n in graph.nodes for o in n.outputs}
    found: dict[tuple[str, ...], list[Node]] = {}
    unexpected = []
    for node in graph.nodes:
        if node.op_type != "Conv":
            continue
        path = _param_path(rules, _conv_name(node))
        if path in expected:
            found.setdefault(path, []).append(node)
        else:
            unexpected.append(_conv_name(node))
    missing = [_where(network, p) for p in expected if p not in found]
    twice = [_where(network, p) for p, nodes in found.items()
             if len(nodes) > 1]
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        problems.append(f"unexpected {network} convs: "
                        + ", ".join(unexpected))
    if twice:
        problems.append("found more than once: " + ", ".join(twice))
    params: Params = {}
    for path, nodes in found.items():
        if len(nodes) != 1:
            continue
        parent = params
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
        parent[path[-1]] = _layer_params(graph, producers, nodes[0],
                                         expected[path],
                                         _where(network, path), problems)
    return params


def from_graphs(predict_graph: Graph, transform_graph: Graph) -> Params:
    """The model's parameters, dequantised from the two graphs.

    Args:
      predict_graph: ``arbitrary_predict.onnx`` (style predictor).
      transform_graph: ``arbitrary_transform.onnx`` (style transformer).

    Returns:
      {"predictor": flax params, "transformer": flax params}, float32 numpy
      arrays, shaped as ``model.abstract_params()``.

    Raises:
      WeightsError: one line naming every missing, unexpected or repeated
        layer and every wrong shape.
    """
    abstract = model.abstract_params()
    problems: list[str] = []
    params = {
        "predictor": _network_params(predict_graph, _PREDICTOR_RULES,
                                     abstract["predictor"], "predictor",
                                     problems),
        "transformer": _network_params(transform_graph, _TRANSFORMER_RULES,
                                       abstract["transformer"],
                                       "transformer", problems),
    }
    if problems:
        raise WeightsError("ONNX graphs do not match the fast style model ("
                           + "; ".join(problems) + ")")
    # Guards the walk above: every leaf of the model's tree, nothing else.
    want = jax.tree_util.tree_structure(abstract)
    if jax.tree_util.tree_structure(params) != want:
        raise WeightsError("ONNX graphs do not match the fast style model "
                           "(parameter tree differs)")
    return params
