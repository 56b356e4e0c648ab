#!/usr/bin/env python
"""Inference latency and throughput of an RTMDet preset on the current Keras backend.

Measures, for each dtype policy, batch size and execution path, the network
forward alone and (with `--with-postprocess`) forward + post-processing
(decode + class-aware NMS; Ins: + the dynamic-conv mask logits) and, for
Ins presets, the end-to-end `forward+postprocess+masks` (+ masks upsampled,
rescaled and cropped to `--raw-size` by `finalize_predictions`, to numpy).
Weights are random (`load_weights=False`): speed
does not depend on them, except through how many candidates reach NMS (see
`--min-bbox-size`).

Paths per backend (`--paths`, default marked *):
    torch:      eager* (Keras eager under no_grad),
                compiled* (`keras_rtmdet.inference.compile_for_inference`:
                torch.export + torch.compile, `--compile-mode`)
    jax:        jit* (`jax.jit` over `model.stateless_call`), eager
    tensorflow: xla* (`tf.function(jit_compile=True)`), graph (tf.function
                without XLA), eager

Every timed iteration ends with a device synchronisation (jax:
`block_until_ready`; torch: `torch.cuda.synchronize()` on CUDA; TF:
`tf.test.experimental.sync_devices()`, else a copy to numpy). Latency is the
median over `--iters` timed runs after `--warmup` untimed ones; throughput is
batch / median. The first call (compilation) is reported separately.

Examples:
    KERAS_BACKEND=jax python benchmarks/inference_benchmark.py --json out.json
    KERAS_BACKEND=torch python benchmarks/inference_benchmark.py --preset rtmdet_tiny_coco \
        --image-size 128 --batch-sizes 1,2 --iters 2 --warmup 1 --with-postprocess
"""

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback

MASK_STAGE = "forward+postprocess+masks"
RAW_SIZE = [None, None]  # (h, w) of the raw images masks are pasted to; set from --raw-size
DEFAULT_PATHS = {"torch": ("eager", "compiled"), "jax": ("jit",), "tensorflow": ("xla",)}
KNOWN_PATHS = {"torch": ("eager", "compiled"), "jax": ("jit", "eager"), "tensorflow": ("xla", "graph", "eager")}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("jax", "torch", "tensorflow"), help="sets KERAS_BACKEND (default: the environment's)")
    p.add_argument("--preset", default="rtmdet_s_coco")
    p.add_argument("--image-size", default="640", help="N or HxW, multiples of 32 (default 640)")
    p.add_argument("--batch-sizes", default="1,32,64")
    p.add_argument("--dtypes", default="float32,mixed_bfloat16", help="Keras dtype policies")
    p.add_argument("--paths", default=None, help="comma list; default per backend (see the module docstring)")
    p.add_argument("--iters", type=int, default=20, help="timed runs per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (the first one compiles)")
    p.add_argument("--with-postprocess", action="store_true", help="also time forward + postprocess (NMS)")
    p.add_argument(
        "--min-bbox-size",
        type=float,
        default=-1e6,
        help="post-processing size filter; the default keeps every candidate so that, with random "
        "weights, all max_candidates reach NMS (worst case, as in COCO eval at score_threshold 0.001); "
        "0 is the model's default",
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="post-processing score threshold (default: the model's; random Ins weights score ~0.01, "
        "under Ins' 0.05: pass 0.001 for the worst case of 100 masks per image)",
    )
    p.add_argument(
        "--raw-size",
        default=None,
        help="HxW of the raw images Ins masks are pasted back to in the masks stage (default: the input size)",
    )
    p.add_argument("--compile-mode", default="reduce-overhead", help="torch.compile mode for the compiled path ('none' = default)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend for the compiled path")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON (rewritten after every measurement)")
    args = p.parse_args(argv)
    size = [int(s) for s in args.image_size.lower().split("x")]
    args.image_size = (size[0], size[-1])
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    if args.compile_mode.lower() == "none":
        args.compile_mode = None
    return args


# --- per-backend runners: each returns (fn, x, sync); fn(x) gives the outputs ---


def _device_array(x):
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        with tf.device(gpus[0].name if gpus else "/CPU:0"):
            return tf.identity(tf.constant(x))
    if backend == "jax":
        import jax

        return jax.device_put(x)
    return keras.ops.convert_to_tensor(x)


def _sync_fn():
    import keras

    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return jax.block_until_ready
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return lambda out: torch.cuda.synchronize()
        return lambda out: None
    import tensorflow as tf

    sync_devices = getattr(getattr(tf.test, "experimental", None), "sync_devices", None)
    if sync_devices is not None:
        return lambda out: sync_devices()
    return lambda out: tf.nest.map_structure(lambda t: t.numpy(), out)


def make_runners(model, path, batch_size, image_size, stages, args):
    """{stage: fn} for one path and input shape; fn(x) returns the outputs."""
    import keras

    backend = keras.config.backend()
    if path not in KNOWN_PATHS[backend]:
        raise ValueError(f"Unknown path {path!r} for the {backend} backend; known: {KNOWN_PATHS[backend]}.")

    def post(outputs):
        return model.postprocess(outputs, image_size)

    if backend == "torch" and path == "compiled":
        from keras_rtmdet.inference import compile_for_inference

        # The forward, and forward + postprocess as a second compiled graph (`CompiledDetector.detect`).
        compiled = compile_for_inference(
            model, batch_size, image_size, mode=args.compile_mode, backend=args.compile_backend
        )
        runners = {"forward": compiled, "forward+postprocess": compiled.detect}
        return _with_mask_stage(model, runners, batch_size, image_size, stages)

    runners = {}
    for stage in [s for s in stages if s != MASK_STAGE]:
        with_post = stage == "forward+postprocess"
        if backend == "torch":  # eager
            import torch

            def fn(x, with_post=with_post):
                with torch.no_grad():
                    out = model(x, training=False)
                    return post(out) if with_post else out

        elif backend == "jax":
            import jax

            trainable = [v.value for v in model.trainable_variables]
            non_trainable = [v.value for v in model.non_trainable_variables]

            def forward(tv, ntv, x, with_post=with_post):
                out, _ = model.stateless_call(tv, ntv, x, training=False)
                return post(out) if with_post else out

            # Variables are arguments, not closure constants, so XLA does not fold them in.
            call = jax.jit(forward) if path == "jit" else forward
            fn = lambda x, call=call, tv=trainable, ntv=non_trainable: call(tv, ntv, x)  # noqa: E731
        else:
            import tensorflow as tf

            def forward(x, with_post=with_post):
                out = model(x, training=False)
                return post(out) if with_post else out

            fn = forward if path == "eager" else tf.function(forward, jit_compile=path == "xla")
        runners[stage] = fn
    return _with_mask_stage(model, runners, batch_size, image_size, stages)


def _with_mask_stage(model, runners, batch_size, image_size, stages):
    """Adds the Ins end-to-end stage: detections, then masks pasted at a raw image size (`--raw-size`)."""
    if MASK_STAGE not in stages:
        return runners
    import numpy as np

    raw_h, raw_w = RAW_SIZE[0] or image_size[0], RAW_SIZE[1] or image_size[1]
    scale = min(image_size[0] / max(raw_h, raw_w), image_size[1] / min(raw_h, raw_w))
    scale_factors = np.full((batch_size, 2), scale, np.float32)
    original_sizes = np.tile(np.array([[raw_h, raw_w]]), (batch_size, 1))
    detect = runners["forward+postprocess"]
    runners[MASK_STAGE] = lambda x: model.finalize_predictions(detect(x), scale_factors, original_sizes)
    return runners


def measure(fn, x, sync, iters, warmup):
    t0 = time.perf_counter()
    out = fn(x)
    sync(out)
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        sync(fn(x))
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = fn(x)
        sync(out)
        times.append(time.perf_counter() - t0)
    return first, times, out


def _release():
    import keras

    gc.collect()
    if keras.config.backend() == "torch":
        import torch

        torch._dynamo.reset()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# --- environment, output ---


def environment():
    import keras
    import numpy as np

    backend = keras.config.backend()
    env = {
        "backend": backend,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "image_data_format": keras.config.image_data_format(),
    }
    if backend == "torch":
        import torch

        env["torch"] = torch.__version__
        env["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        env["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        env["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        try:
            import torchvision

            env["torchvision"] = torchvision.__version__
        except Exception:
            env["torchvision"] = None
    elif backend == "jax":
        import jax

        env["jax"] = jax.__version__
        dev = jax.devices()[0]
        env["device"] = f"{dev.platform}: {getattr(dev, 'device_kind', dev)}"
    else:
        import tensorflow as tf

        env["tensorflow"] = tf.__version__
        gpus = tf.config.list_physical_devices("GPU")
        env["device"] = ", ".join(
            tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus
        ) or "cpu"
    return env


def write_json(path, meta, results):
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    os.replace(tmp, path)


def print_table(meta, results):
    headers = ["dtype", "path", "stage", "batch", "median ms", "p90 ms", "img/s", "setup s", "first call s", "dets/img"]
    rows = []
    for r in results:
        if r.get("error"):
            rows.append([r["dtype"], r["path"], r["stage"], str(r["batch_size"]), "error: " + r["error"][:60], "", "", "", "", ""])
            continue
        rows.append(
            [
                r["dtype"],
                r["path"],
                r["stage"],
                str(r["batch_size"]),
                f"{r['median_ms']:.2f}",
                f"{r['p90_ms']:.2f}",
                f"{r['images_per_s']:.1f}",
                "" if r.get("setup_s") is None else f"{r['setup_s']:.1f}",
                f"{r['first_call_s']:.1f}",
                "" if r.get("mean_detections") is None else f"{r['mean_detections']:.0f}",
            ]
        )
    title = (
        f"{meta['preset']} {meta['image_size'][0]}x{meta['image_size'][1]} on {meta['env']['backend']} "
        f"({meta['env'].get('device')}), {meta['iters']} iters after {meta['warmup']} warm-up"
    )
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
        for row in [headers] + rows:
            print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
        return
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 3 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))
    console.print(table)


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != args.backend:
            raise SystemExit("--backend must be chosen before keras is imported")
        os.environ["KERAS_BACKEND"] = args.backend
    # Run from a checkout without installing: the repository root holds keras_rtmdet.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import keras
    import numpy as np

    from keras_rtmdet import DenseDetector

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # one tf.function per measurement: retracing warnings are expected
    paths = args.paths.split(",") if args.paths else list(DEFAULT_PATHS[backend])
    for path in paths:
        if path not in KNOWN_PATHS[backend]:
            raise SystemExit(f"Unknown path {path!r} for the {backend} backend; known: {KNOWN_PATHS[backend]}.")
    for size in args.image_size:
        if size % 32:
            raise SystemExit(f"--image-size must be multiples of 32, got {args.image_size}")
    stages = ["forward", "forward+postprocess"] if args.with_postprocess else ["forward"]
    if args.raw_size:
        RAW_SIZE[:] = [int(v) for v in args.raw_size.lower().split("x")]
    meta = {
        "preset": args.preset,
        "image_size": list(args.image_size),
        "iters": args.iters,
        "warmup": args.warmup,
        "min_bbox_size": args.min_bbox_size,
        "score_threshold": args.score_threshold,
        "raw_size": args.raw_size,
        "compile_mode": args.compile_mode,
        "compile_backend": args.compile_backend,
        "weights": "random",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "env": environment(),
    }
    print(f"Environment: {json.dumps(meta['env'])}", flush=True)
    sync = _sync_fn()
    rng = np.random.default_rng(0)
    results = []
    for dtype in args.dtypes:
        # clear_session() resets the global dtype policy: set it afterwards.
        keras.utils.clear_session()
        keras.config.set_dtype_policy(dtype)
        settings = {} if args.score_threshold is None else {"score_threshold": args.score_threshold}
        model = DenseDetector.from_preset(args.preset, load_weights=False, min_bbox_size=args.min_bbox_size, **settings)
        if backend == "torch":
            model.eval()
        model_stages = stages + [MASK_STAGE] if args.with_postprocess and hasattr(model, "masks_from_detections") else stages
        for batch_size in args.batch_sizes:
            x = _device_array(rng.uniform(0, 255, (batch_size, *args.image_size, 3)).astype("float32"))
            for path in paths:
                print(f"-> {dtype} batch {batch_size} {path}: setting up ...", flush=True)
                try:
                    t0 = time.perf_counter()
                    runners = make_runners(model, path, batch_size, args.image_size, model_stages, args)
                    setup, setup_error = time.perf_counter() - t0, None
                except Exception as e:
                    runners, setup, setup_error = {}, None, e
                for stage in model_stages:
                    record = {
                        "backend": backend,
                        "dtype": dtype,
                        "path": path,
                        "stage": stage,
                        "batch_size": batch_size,
                        "image_size": list(args.image_size),
                        "setup_s": setup,
                    }
                    print(f"-> {dtype} batch {batch_size} {path} {stage} ...", flush=True)
                    try:
                        if setup_error is not None:
                            raise setup_error
                        first, times, out = measure(runners[stage], x, sync, args.iters, args.warmup)
                        median = statistics.median(times)
                        record.update(
                            first_call_s=first,
                            median_ms=1e3 * median,
                            mean_ms=1e3 * statistics.fmean(times),
                            min_ms=1e3 * min(times),
                            p90_ms=1e3 * sorted(times)[min(len(times) - 1, int(0.9 * len(times)))],
                            images_per_s=batch_size / median,
                            times_ms=[1e3 * t for t in times],
                        )
                        if stage != "forward":
                            dets = keras.ops.convert_to_numpy(out["num_detections"])
                            record["mean_detections"] = float(np.mean(dets))
                        del out
                        print(
                            f"   median {record['median_ms']:.2f} ms, {record['images_per_s']:.1f} img/s "
                            f"(first call {first:.1f} s)",
                            flush=True,
                        )
                    except Exception as e:  # keep going: one OOM or compile failure should not lose the rest
                        record["error"] = f"{type(e).__name__}: {e}"
                        record["traceback"] = "".join(traceback.format_exception(e))
                        print(f"   FAILED: {record['error'][:500]}", flush=True)
                    results.append(record)
                    write_json(args.json, meta, results)
                del runners
                _release()
            del x
        del model
        _release()
    print_table(meta, results)
    if args.json:
        print(f"Results written to {args.json}")
    return results


if __name__ == "__main__":
    main()
