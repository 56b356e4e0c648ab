"""The two GPU-only routes to TensorRT: TF-TRT on a SavedModel, and an engine built from the ONNX.

TF-TRT exists only in TensorFlow builds with TensorRT: the official wheels up
to 2.17 (TensorFlow 2.18 removed it from its CUDA builds). The maintained
route is ONNX → TensorRT with NVIDIA's `tensorrt` package (`pip install
tensorrt`, a CUDA GPU): `build_tensorrt_engine`.
"""

import importlib.util

TF_TRT_UNAVAILABLE = (
    "This TensorFlow ({version}) was built without TensorRT, so TF-TRT cannot run: TF-TRT ships only "
    "in TensorFlow builds with TensorRT (the official wheels up to 2.17; 2.18 dropped it). Use "
    "format='tensorrt' (an engine built from the ONNX export with the `tensorrt` package) instead, "
    "or TensorFlow <= 2.17 with TensorRT 8.6 on a CUDA machine."
)


def tf_trt_available():
    """(available, reason): whether this TensorFlow can convert with TF-TRT."""
    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    if not info.get("is_tensorrt_build", False):
        return False, TF_TRT_UNAVAILABLE.format(version=tf.__version__)
    if not tf.config.list_physical_devices("GPU"):
        return False, "TF-TRT needs a CUDA GPU; TensorFlow sees none."
    return True, ""


def convert_with_tf_trt(saved_model_dir, output_dir, precision="fp32"):
    """Convert a SavedModel with TF-TRT (FP32 or FP16) into `output_dir`.

    Engines are built lazily, per input shape, at the first call.
    """
    available, reason = tf_trt_available()
    if not available:
        raise RuntimeError(reason)
    from tensorflow.python.compiler.tensorrt import trt_convert as trt

    modes = {"fp32": trt.TrtPrecisionMode.FP32, "fp16": trt.TrtPrecisionMode.FP16}
    if precision not in modes:
        raise ValueError(f"precision must be 'fp32' or 'fp16' for TF-TRT, got {precision!r}.")
    converter = trt.TrtGraphConverterV2(
        input_saved_model_dir=saved_model_dir,
        precision_mode=modes[precision],
        use_dynamic_shape=True,
        dynamic_shape_profile_strategy="Optimal",
    )
    converter.convert()
    converter.save(output_dir)
    return output_dir


def tensorrt_available():
    """(available, reason): whether an engine can be built here."""
    if importlib.util.find_spec("tensorrt") is None:
        return False, (
            "Building a TensorRT engine needs NVIDIA's `tensorrt` Python package and a CUDA GPU "
            "(pip install tensorrt); it is not installed. The ONNX export (format='onnx') runs in "
            "ONNX Runtime, or builds an engine with `trtexec --onnx=...` where TensorRT is installed."
        )
    try:
        import tensorrt as trt

        trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as error:  # no CUDA device or driver: the builder cannot start
        return False, f"TensorRT is installed but cannot start a builder here (no usable CUDA GPU?): {error}"
    return True, ""


def build_tensorrt_engine(onnx_bytes, engine_path, input_shape, fp16=False, max_batch_size=None, workspace_gb=4):
    """Parse an ONNX export with TensorRT and write the serialized engine.

    Args:
        onnx_bytes: the serialized ONNX model.
        engine_path: where to write the `.engine` / `.plan` file.
        input_shape: (B, H, W, 3) of the `images` input; a None batch gets
            an optimisation profile from 1 to `max_batch_size` (default 16).
        fp16: allow FP16 kernels.
    """
    available, reason = tensorrt_available()
    if not available:
        raise RuntimeError(reason)
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX export: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    batch, height, width, channels = input_shape
    if batch is None or height is None or width is None:
        if height is None or width is None:
            raise ValueError("A TensorRT engine needs a fixed image size: export with input_size=(H, W).")
        largest = int(max_batch_size or 16)
        profile = builder.create_optimization_profile()
        profile.set_shape("images", (1, height, width, channels), (largest, height, width, channels),
                          (largest, height, width, channels))
        config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above).")
    with open(engine_path, "wb") as f:
        f.write(engine)
    return engine_path
