"""Tiny ONNX models built with onnx.helper, for tests and the benchmark: no model file has to be shipped.

`write_pooled_matmul_model` has JAPANESE FACE's interface (input ``input`` [N, 3, 224, 224], 512 values out,
a ``signature`` metadata property); its arithmetic is simple enough to recompute in numpy (`pooled_matmul`),
which makes it an independent oracle for faceval's preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIGNATURE = "faceval test model, not JAPANESE FACE"
POOLED = 14  # the pooled grid is POOLED x POOLED per channel: spatially sensitive, cheap to multiply


def _save(path: Path, nodes: list, inputs: list, outputs: list, initializers: list, metadata: dict[str, str]) -> None:
    graph = helper.make_graph(nodes, "faceval_test", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="faceval-tests")
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_pooled_matmul_model(
    path: Path,
    *,
    size: int = 224,
    output_size: int = 512,
    batch: int | str = "N",
    layout: str = "NCHW",
    seed: int = 0,
    float16_input: bool = False,
    nan_output: bool = False,
    signature: str = SIGNATURE,
) -> np.ndarray:
    """Average-pool the image to 3 x 14 x 14, flatten, multiply by a seeded matrix; returns the matrix.

    ``layout="NHWC"`` takes [N, size, size, 3] and transposes it first; ``float16_input`` declares a float16
    input and casts it to float; ``nan_output`` divides zero by zero.
    """
    weights = np.random.default_rng(seed).standard_normal((3 * POOLED * POOLED, output_size)).astype(np.float32)
    kernel = size // POOLED
    dims = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    nodes = []
    pooled_from = "input"
    if float16_input:
        nodes.append(helper.make_node("Cast", [pooled_from], ["as_float"], to=TensorProto.FLOAT))
        pooled_from = "as_float"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [pooled_from], ["nchw"], perm=[0, 3, 1, 2]))
        pooled_from = "nchw"
    nodes += [
        helper.make_node(
            "AveragePool", [pooled_from], ["pooled"], kernel_shape=[kernel, kernel], strides=[kernel, kernel]
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["product"]),
    ]
    if nan_output:
        nodes += [
            helper.make_node("Sub", ["product", "product"], ["zero"]),
            helper.make_node("Div", ["zero", "zero"], ["output"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["product"], ["output"]))
    _save(
        path,
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT16 if float16_input else TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, output_size])],
        [numpy_helper.from_array(weights, "weights")],
        {"signature": signature},
    )
    return weights


def pooled_matmul(tensors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """numpy's version of `write_pooled_matmul_model`'s NCHW arithmetic, in float64."""
    count, channels, size, _ = tensors.shape
    kernel = size // POOLED
    pooled = tensors.astype(np.float64).reshape(count, channels, POOLED, kernel, POOLED, kernel).mean(axis=(3, 5))
    return pooled.reshape(count, -1) @ weights.astype(np.float64)


def write_rank3_model(path: Path) -> None:
    """A valid model whose input is [N, 3, 224]: the wrong rank for any image spec."""
    _save(
        path,
        [helper.make_node("ReduceMean", ["input"], ["output"], axes=[2], keepdims=0)],
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])],
        [],
        {},
    )
