"""ONNX export of a detector from any Keras backend.

Each backend's own exporter writes the serving stages (`serving_graph`):
tf2onnx on TensorFlow and jax2onnx on JAX (both through Keras'
`Model.export(format="onnx")`), and PyTorch's dynamo exporter on torch. The
network is exported once (`"front"`); the raw artefact is its raw half, and
an end-to-end one chains its candidate half, an ONNX `NonMaxSuppression`
(`onnx_nms`) and the exported `"detections"` stage. ONNX's NMS is
axis-aligned: for a model whose NMS is not (`variant.axis_aligned_nms`
False: RTMDet-R's rotated NMS) the end-to-end artefact is the exported
`"end_to_end"` stage, its NMS the model's `graph_nms_method` as an ONNX
`Loop` of standard operators. TensorFlow and JAX export it; PyTorch's
exporter cannot yet (`_check_traced_nms`).

Shapes: the image height and width are fixed at export (`input_size`), or
dynamic on TensorFlow. The batch size is dynamic on TensorFlow and JAX; on
torch it is fixed at export (`batch_size`, default 1), because
`torch.export` specialises the batch dimension of this graph.
"""

import os
import tempfile

import keras
import numpy as np

from keras_rtmdet.export.onnx_nms import nms_graph
from keras_rtmdet.export.serving_graph import CANDIDATE_NAMES
from keras_rtmdet.export.serving_graph import ServingGraph

ONNX_VARIANTS = ("raw", "end_to_end")


def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "ONNX export needs the `onnx` package (and `onnxruntime` to check or run the result): "
            'pip install "keras-rtmdet[export]"'
        ) from error


def stage_inputs(graph, batch_size, sample):
    """(names, shapes, dtypes) of a stage's inputs; shapes from `sample` (one numpy array per input)."""
    shapes = []
    for name, value in zip(graph.input_names, sample, strict=True):
        shape = list(value.shape)
        shape[0] = batch_size
        if name == "images" and graph.input_size is None:
            shape[1:3] = [None, None]
        shapes.append(tuple(shape))
    return graph.input_names, shapes, [str(value.dtype) for value in sample]


def export_stage(graph, sample, batch_size=None, opset=None):
    """One serving stage as an ONNX model, inputs and outputs named as `serving_names` says.

    Args:
        graph: a `ServingGraph`.
        sample: numpy inputs of the stage (shapes and dtypes to export, and
            the example torch traces).
        batch_size: the exported batch size (None: dynamic, TF and JAX).
    """
    import onnx

    from keras_rtmdet.export.onnx_graph_edit import name_inputs_and_outputs
    from keras_rtmdet.export.onnx_graph_edit import split_nd_max_pools

    backend = keras.config.backend()
    names, shapes, dtypes = stage_inputs(graph, batch_size, sample)
    if not graph.built and graph.detector.built:
        # A stage's weights are all the detector's: built, it needs no eager run (on JAX, compiling every op).
        graph.built = True
    if not graph.built:
        graph(sample[0] if graph.stage != "detections" else list(sample))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "stage.onnx")
        if backend == "torch":
            _export_torch(graph, sample, path, opset)
        else:
            specs = [keras.InputSpec(shape=s, dtype=d, name=n) for n, s, d in zip(names, shapes, dtypes)]
            signature = specs if graph.stage != "detections" else [specs]
            graph.export(path, format="onnx", input_signature=signature, opset_version=opset, verbose=False)
        model = onnx.load(path)
    if backend == "jax":
        split_nd_max_pools(model)
    return name_inputs_and_outputs(model, graph.input_names, graph.output_names)


def _export_torch(graph, sample, path, opset):
    import torch

    graph.eval()
    tensors = [torch.as_tensor(value) for value in sample]
    args = (tensors[0],) if graph.stage != "detections" else (tensors,)
    program = torch.onnx.export(
        graph,
        args,
        dynamo=True,
        opset_version=opset,
        input_names=list(graph.input_names),
        output_names=list(graph.output_names),
        verbose=False,
    )
    program.optimize()
    program.save(path)


def sample_images(graph, batch_size):
    height, width = graph.input_size or graph.image_size
    return np.full((batch_size or 1, height, width, 3), 114, np.uint8)


def _check_traced_nms(detector, backend):
    """Refuse, with the alternatives, an end-to-end export whose NMS loop this backend's exporter cannot write."""
    if backend != "torch":
        return
    # torch.export captures the loop (`bounded_while_loop`), but the ONNX exporter's decomposition pass
    # fails on a while_loop whose body makes tensors of Python numbers, as every Keras op taking a
    # scalar does ("Attempting to use FunctionalTensor on its own"; pytorch/pytorch#180354 for `cond`).
    raise NotImplementedError(
        f"End-to-end ONNX export of {detector.variant.display_name} (its NMS a loop in the graph) fails in "
        "PyTorch's ONNX exporter. Export it from the TensorFlow or JAX backend (save_to_preset, then "
        "from_preset under KERAS_BACKEND=tensorflow or jax), or export nms=False (raw boxes and scores, the "
        "NMS left to the server)."
    )


def onnx_model(detector, nms=True, input_size=None, batch_size=None, channel_order="rgb", opset=None):
    """`detector` as one ONNX `ModelProto`: end-to-end (`nms=True`) or raw; see `onnx_models`."""
    variant = "end_to_end" if nms else "raw"
    return onnx_models(detector, (variant,), input_size, batch_size, channel_order, opset)[variant]


def onnx_models(detector, variants=ONNX_VARIANTS, input_size=None, batch_size=None, channel_order="rgb", opset=None):
    """ONNX `ModelProto`s of `detector`, from one export of its network (two for RTMDet-R's raw and end-to-end).

    Args:
        detector: an `RTMDet`, `RTMDetIns` or `RTMDetRotated`.
        variants: `"end_to_end"` (padded `boxes`, `scores`, `labels`,
            `num_detections`, RTMDet-Ins `masks`: the NMS in the graph) and/or
            `"raw"` (every prior's decoded `boxes` and `scores`, RTMDet-Ins
            `kernel_preds` and `mask_feat`). Boxes are the model's
            `variant.box_format`: xyxy (B, K, 4) / (B, N, 4), or RTMDet-R's
            rboxes (cx, cy, w, h, angle in radians) (B, K, 5) / (B, N, 5).
        input_size: (H, W) of the served images, None for any size
            (TensorFlow only).
        batch_size: fixed batch size, None for dynamic (TensorFlow, JAX).
        channel_order: of the served images.
        opset: ONNX opset (default: the backend exporter's).

    Returns: {variant: ModelProto}.
    """
    _require_onnx()
    import onnx

    unknown = sorted(set(variants) - set(ONNX_VARIANTS))
    if unknown:
        raise ValueError(f"Unknown ONNX variant {unknown[0]!r}; one of {ONNX_VARIANTS}.")
    backend = keras.config.backend()
    if backend != "tensorflow" and input_size is None:
        raise ValueError(
            f"ONNX export on the {backend} backend needs a fixed input_size (H, W): only TensorFlow "
            "exports a graph for images of any size."
        )
    if detector.detection_field_inputs and input_size is None and "end_to_end" in variants:
        raise ValueError(f"{type(detector).__name__} pastes masks at the served size: give a fixed input_size (H, W).")
    if backend == "torch" and batch_size is None:
        batch_size = 1
    models = {}
    if "end_to_end" in variants and not detector.variant.axis_aligned_nms:
        _check_traced_nms(detector, backend)
        whole = ServingGraph(detector, "end_to_end", input_size=input_size, channel_order=channel_order)
        models["end_to_end"] = export_stage(whole, [sample_images(whole, batch_size)], batch_size, opset)
        variants = tuple(variant for variant in variants if variant != "end_to_end")
    variants = tuple(dict.fromkeys(variants))
    if variants == ("raw",):
        # Alone, the raw half is exported by itself: the candidate selection would only be cut away.
        raw = ServingGraph(detector, "raw", input_size=input_size, channel_order=channel_order)
        models["raw"] = export_stage(raw, [sample_images(raw, batch_size)], batch_size, opset)
    elif variants:
        models.update(_front_models(detector, variants, input_size, batch_size, channel_order, opset))
    for proto in models.values():
        onnx.checker.check_model(proto)
    return models


def _front_models(detector, variants, input_size, batch_size, channel_order, opset):
    """`onnx_models` from one export of the `"front"` stage: raw, and end-to-end through ONNX's NMS."""
    from onnx.utils import Extractor

    from keras_rtmdet.export.onnx_graph_edit import chain_graphs

    front = ServingGraph(detector, "front", input_size=input_size, channel_order=channel_order)
    images = sample_images(front, batch_size)
    sample_outputs = [keras.ops.convert_to_numpy(x) for x in front(images)]
    model = export_stage(front, [images], batch_size, opset)
    models = {}
    if "raw" in variants:
        models["raw"] = Extractor(model).extract_model(["images"], list(ServingGraph(detector, "raw").output_names))
    if "end_to_end" in variants:
        candidates = Extractor(model).extract_model(["images"], [*CANDIDATE_NAMES, *detector.detection_field_inputs])
        label_type = next(v.type.tensor_type.elem_type for v in model.graph.output if v.name == "candidate_labels")
        suppress = nms_graph(
            detector.num_classes,
            float(detector.iou_threshold),
            int(detector.max_detections),
            next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            model.ir_version,
            label_type,
        )
        finish = ServingGraph(detector, "detections", input_size=input_size, channel_order=channel_order)
        by_name = dict(zip(front.output_names, sample_outputs))
        by_name["keep"] = by_name["candidate_valid"]
        finish_model = export_stage(finish, [by_name[name] for name in finish.input_names], batch_size, opset)
        models["end_to_end"] = chain_graphs([candidates, suppress, finish_model], list(finish.output_names))
    return models
