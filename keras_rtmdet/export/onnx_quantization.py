"""INT8 post-training quantization of an ONNX export (`export(..., format="onnx", precision="int8")`).

ONNX Runtime's static quantization in QDQ form: per-channel int8 weights,
uint8 activations with ranges recorded on calibration images. Only the
network is quantized: the in-graph letterbox before its first convolution,
and the box decoding, top-k and NMS after its last ones (its "exit"
convolutions, which stay float too: they make the scores and box distances
that the thresholds and the NMS compare), keep float arithmetic. That region
is read off the graph (`network_region`), so it holds for every backend's
exporter and node naming.
"""

import os
import tempfile

import numpy as np

from keras_rtmdet.export.calibration import load_calibration

# Each backend's convolution ops in its graph: ONNX, OpenVINO IR.
CONVOLUTIONS = ("Conv", "Convolution", "GroupConvolution")


def network_region(nodes, inputs_of, is_convolution):
    """The nodes between the network's convolutions, and its exit convolutions.

    Args:
        nodes: the graph's nodes, in any order (hashable).
        inputs_of: node → the nodes producing its inputs.
        is_convolution: node → bool.

    Returns: (region, exits): `region` the set of nodes that are convolutions or lie on a path
        from one convolution to another (backbone, neck and head towers: the part to
        quantize); `exits` the convolutions that feed no other (the head's outputs).
    """
    consumers = {node: [] for node in nodes}
    for node in nodes:
        for producer in inputs_of(node):
            consumers.setdefault(producer, []).append(node)
    convolutions = [node for node in nodes if is_convolution(node)]
    after = _reachable(convolutions, lambda node: consumers.get(node, ()))
    # Strict ancestors of a convolution: walk back from the convolutions' producers.
    before = _reachable([p for c in convolutions for p in inputs_of(c)], inputs_of)
    region = after & (before | set(convolutions))
    exits = {c for c in convolutions if c not in before}
    return region, exits


def _reachable(starts, neighbours):
    seen, stack = set(starts), list(starts)
    while stack:
        for other in neighbours(stack.pop()):
            if other not in seen:
                seen.add(other)
                stack.append(other)
    return seen


def onnx_network_region(graph):
    """(region, exits) of an ONNX `GraphProto` as sets of node indices (`network_region`)."""
    producer = {
        output: i for i, node in enumerate(graph.node) for output in node.output
    }
    nodes = list(range(len(graph.node)))

    def inputs_of(i):
        return [producer[name] for name in graph.node[i].input if name in producer]

    return network_region(
        nodes, inputs_of, lambda i: graph.node[i].op_type in CONVOLUTIONS
    )


def image_batches(images, input_shape):
    """`images` in the served graph's batch size: `input_shape[0]` if fixed (the last batch padded by repeats), else 1."""
    batch = (
        input_shape[0] if isinstance(input_shape[0], int) and input_shape[0] > 0 else 1
    )
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, images[: batch - len(chunk)]])
        yield chunk


def _input_shape(proto):
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def _copy(proto):
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


def quantize_onnx(proto, calibration_npy_path):
    """`proto` (an end-to-end or raw export, input `images` (B, H, W, 3) uint8) with its network in INT8.

    Args:
        proto: the float `ModelProto` of `onnx_export.onnx_model`.
        calibration_npy_path: a `.npy` of (N, H, W, 3) uint8 images at the served size.

    Returns: the quantized `ModelProto` (QuantizeLinear / DequantizeLinear around the
        network's operators; ONNX Runtime fuses them into integer kernels).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    images = load_calibration(calibration_npy_path)
    proto = _copy(proto)  # the node renaming below must not touch the caller's model
    input_name = proto.graph.input[0].name
    expected = _input_shape(proto)[1:]
    if any(
        d is not None and d != s
        for d, s in zip(expected, images.shape[1:], strict=True)
    ):
        raise ValueError(
            f"Calibration images are {images.shape[1:]}; the graph serves {tuple(expected)}."
        )
    region, exits = onnx_network_region(proto.graph)
    if not region:
        raise ValueError("The graph has no convolution: nothing to quantize.")
    # Node names can be empty or repeated in exported graphs: name every node so the exclusions are exact.
    for i, node in enumerate(proto.graph.node):
        node.name = f"{node.name or node.op_type}__{i}"
    excluded = [
        node.name
        for i, node in enumerate(proto.graph.node)
        if i not in region or i in exits
    ]
    op_types = sorted({proto.graph.node[i].op_type for i in region - exits})

    batches = list(image_batches(images, _input_shape(proto)))
    # Ranges merged every `stride` batches: ONNX Runtime otherwise keeps every activation of every image.
    stride = max(d for d in range(1, 5) if len(batches) % d == 0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.set_range(0, len(batches))

        def __len__(self):
            return len(batches)

        def set_range(self, start_index, end_index):
            self.pending = iter(batches[start_index:end_index])

        def get_next(self):
            batch = next(self.pending, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as folder:
        source, target = (
            os.path.join(folder, "float.onnx"),
            os.path.join(folder, "int8.onnx"),
        )
        onnx.save(proto, source)
        quantize_static(
            source,
            target,
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibStridedMinMax": stride},
        )
        return onnx.load(target)
