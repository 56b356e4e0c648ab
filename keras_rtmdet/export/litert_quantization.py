"""INT8 post-training quantization of a float `.tflite` detector: the network in int8, the rest in float.

The converter's own calibration (`representative_dataset`) crashes on the
end-to-end graph: LiteRT's calibrator logs every op output, and the NMS
`WHILE` loop frees the outputs it passes through unchanged (the candidate
boxes), so the logger reads freed memory and the process segfaults
(tensorflow/tensorflow#75140, TF ≥ 2.14). The same calibration is done here
instead: the float model runs in the interpreter on the calibration images,
the min / max of the tensors around the network's operators are written
into the model as the calibrator would, and the MLIR quantizer quantizes
what has ranges. Tensors of the letterbox and of the decode / NMS tail get
none, so those operators stay float: the boxes are decoded and suppressed
in float32 from the dequantized head outputs.
"""

import re
import warnings

import numpy as np


def split_network(interpreter, scope):
    """The network's float tensors and the denylist that keeps every other operator float.

    Args:
        interpreter: an `ai_edge_litert` interpreter of the float model.
        scope: the detector layer's name; its operators' tensors are named
            `.../<scope>[_<n>]/...` by the TensorFlow trace.

    Returns: (tensors, nodes, op_types): the sorted indices of the float
    tensors the network's operators read or write (primary subgraph); the
    output names of the other operators (their node names for the
    quantizer); the operator types found only outside the network.
    """
    in_scope = re.compile(rf"(^|/){re.escape(scope)}(_\d+)*/")
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    operators = interpreter._get_ops_details()
    network = [len(op["outputs"]) > 0 and all(in_scope.search(details[i]["name"]) for i in op["outputs"] if i >= 0) for op in operators]
    read_outside = {i for op, inner in zip(operators, network) if not inner for i in op["inputs"]}
    tensors, nodes, inside, outside = set(), set(), set(), set()
    for op, inner in zip(operators, network):
        outputs = [i for i in op["outputs"] if i >= 0]
        # The head's last operators (what the decoding reads) stay float, as in the ONNX and OpenVINO INT8.
        if inner and not read_outside.intersection(outputs):
            tensors.update(i for i in (*op["inputs"], *outputs) if i >= 0)
            inside.add(op["op_name"])
        else:
            nodes.update(details[i]["name"] for i in outputs)
            outside.add(op["op_name"])
    tensors = sorted(i for i in tensors if i in details and details[i]["dtype"] == np.float32)
    return tensors, sorted(nodes), sorted(outside - inside)


def tensor_ranges(interpreter, tensors, images):
    """{tensor index: (min, max)} of `tensors` over `images`, as LiteRT's calibrator records them.

    Args:
        interpreter: an `ai_edge_litert` interpreter of the float model,
            made with `experimental_preserve_all_tensors=True`.
        tensors: indices of float tensors of its primary subgraph.
        images: (N, H, W, 3) uint8 calibration images at the model's input
            size, fed a batch (the model's fixed batch size) at a time.
    """
    (image_input,) = interpreter.get_input_details()
    batch = int(image_input["shape"][0])
    if len(images) < batch:
        raise ValueError(f"Calibration needs at least {batch} images (the export's batch size); got {len(images)}.")
    low, high = dict.fromkeys(tensors, np.inf), dict.fromkeys(tensors, -np.inf)
    for start in range(0, len(images) - batch + 1, batch):
        interpreter.set_tensor(image_input["index"], np.asarray(images[start : start + batch], np.uint8))
        interpreter.invoke()
        for i in tensors:
            value = interpreter.get_tensor(i)
            low[i], high[i] = min(low[i], float(value.min())), max(high[i], float(value.max()))
    return {i: (low[i], high[i]) for i in tensors}


def with_ranges(model_content, ranges):
    """The flatbuffer with `ranges` written as the tensors' calibration min / max (the calibrator's format)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(model_content)
    tensors = model.subgraphs[0].tensors
    for index, (low, high) in ranges.items():
        params = schema.QuantizationParametersT()
        params.min, params.max = [low], [high]
        tensors[index].quantization = params
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def quantize_network(model_content, images, scope):
    """The float `.tflite` with the network's operators in int8 (per-channel weights), the rest float.

    Args:
        model_content: the float `.tflite` flatbuffer (bytes), uint8 images in.
        images: (N, H, W, 3) uint8 calibration images at the served size.
        scope: the detector layer's name (`split_network`).

    Returns: the quantized flatbuffer (bytes); inputs and outputs keep their types.
    """
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python.convert import mlir_quantize

    with warnings.catch_warnings():
        # Keeping every intermediate tensor is the point here (its "debugging only" warning).
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        interpreter = Interpreter(model_content=model_content, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    tensors, nodes, op_types = split_network(interpreter, scope)
    if not tensors:
        raise ValueError(f"No operator of the network (scope {scope!r}) found in the LiteRT model to quantize.")
    calibrated = with_ranges(model_content, tensor_ranges(interpreter, tensors, images))
    # Same-scale operators (reshape, gather, top-k) and fixed-range ones (sigmoid) next to the network would
    # be quantized from its ranges alone: the scores would come out in 1/256 steps. The node denylist keeps
    # them float; the quantizer does not match multi-output operators (top-k) by name, hence their types too.
    return mlir_quantize(calibrated, denylisted_nodes=nodes, denylisted_ops=op_types)
