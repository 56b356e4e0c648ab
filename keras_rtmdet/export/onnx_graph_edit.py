"""Small edits of ONNX graphs: naming their inputs and outputs, chaining graphs, exporter fix-ups."""

import onnx
from onnx import helper


def _graph_attributes(node):
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute.g
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            yield from attribute.graphs


def name_inputs_and_outputs(model, input_names, output_names):
    """Give the graph's inputs and outputs these names, by position.

    Exporters name them their own way (`Identity_3:0`, `sigmoid_out_0`); the
    renamed value keeps its producers and consumers (an `Identity` links an
    output's new name to the old one).
    """
    graph = model.graph
    if len(graph.input) != len(input_names) or len(graph.output) != len(output_names):
        raise RuntimeError(
            f"The exporter wrote a graph with {len(graph.input)} inputs and {len(graph.output)} outputs; "
            f"expected {len(input_names)} ({', '.join(input_names)}) and {len(output_names)} ({', '.join(output_names)})."
        )
    renames = {value.name: new for value, new in zip(graph.input, input_names) if value.name != new}
    _rename_values(graph, renames)
    for value, new in zip(graph.input, input_names):
        value.name = new
    for value, new in zip(graph.output, output_names):
        if value.name != new:
            graph.node.append(helper.make_node("Identity", [value.name], [new], name=f"output_{new}"))
            value.name = new
    return model


def _rename_values(graph, renames):
    if not renames:
        return
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
        for subgraph in _graph_attributes(node):
            _rename_values(subgraph, renames)
    for value in graph.value_info:
        value.name = renames.get(value.name, value.name)


def _prefix_internal(graph, prefix, keep):
    """Prefix every value and node name of `graph` (and its subgraphs) but the names in `keep`."""
    def rename(name):
        return name if not name or name in keep else prefix + name

    for node in graph.node:
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
        node.name = prefix + node.name if node.name else node.name
        for subgraph in _graph_attributes(node):
            _prefix_internal(subgraph, prefix, keep)
    for initializer in graph.initializer:
        initializer.name = rename(initializer.name)
    for value in graph.value_info:
        value.name = rename(value.name)
    for value in list(graph.input) + list(graph.output):
        value.name = rename(value.name)


def chain_graphs(models, output_names, name="rtmdet"):
    """One model running `models` in turn, each reading the earlier ones' outputs by name.

    Args:
        models: ONNX models of one opset, in execution order. A graph input
            that an earlier model outputs is connected to it; the others are
            inputs of the chain.
        output_names: the chain's outputs, outputs of any of the models.
    """
    produced, inputs, nodes, initializers, value_info, functions = {}, [], [], [], [], []
    opsets = {}
    for index, model in enumerate(models):
        model = onnx.ModelProto.FromString(model.SerializeToString())
        graph = model.graph
        shared = {value.name for value in graph.input} | {value.name for value in graph.output}
        _prefix_internal(graph, f"s{index}/", shared)
        for value in graph.input:
            if value.name not in produced and value.name not in {v.name for v in inputs}:
                inputs.append(value)
        for value in graph.output:
            produced[value.name] = value
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        value_info.extend(graph.value_info)
        functions.extend(model.functions)
        for opset in model.opset_import:
            if opsets.setdefault(opset.domain, opset.version) != opset.version:
                raise ValueError(f"Cannot chain graphs of opsets {opsets[opset.domain]} and {opset.version}.")
    missing = [out for out in output_names if out not in produced]
    if missing:
        raise ValueError(f"No graph of the chain outputs {missing}.")
    graph = helper.make_graph(
        nodes, name, inputs, [produced[out] for out in output_names], initializer=initializers, value_info=value_info
    )
    chained = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets.items()],
        producer_name="keras_rtmdet",
        functions=functions,
    )
    chained.ir_version = models[0].ir_version
    return chained


def split_nd_max_pools(model):
    """Rewrite jax2onnx's 4-D `MaxPool` (over B, H, W, C) into a 2-D one over H, W.

    jax2onnx lowers a `(1, k, k, 1)` NHWC `reduce_window_max` to a `MaxPool`
    with four spatial axes on the input unsqueezed to rank 6, which the ONNX
    spec allows but ONNX Runtime and TensorRT do not run ("Unsupported
    pooling size"). The same pooling as Transpose → 2-D MaxPool → Transpose.
    """
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    rewritten = []
    for node in graph.node:
        if node.op_type != "MaxPool":
            rewritten.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get("kernel_shape", []))
        if len(kernel) != 4 or kernel[0] != 1 or kernel[3] != 1:
            rewritten.append(node)
            continue
        strides = list(attrs.get("strides", [1] * 4))
        pads = list(attrs.get("pads", [0] * 8))
        if strides[0] != 1 or strides[3] != 1 or any(pads[i] for i in (0, 3, 4, 7)):
            rewritten.append(node)
            continue
        prefix = node.name or node.output[0]
        nchw, pooled, nhwc = (f"{prefix}/nchw", f"{prefix}/pooled", f"{prefix}/nhwc")
        # The MaxPool input is x (B, H, W, C) unsqueezed twice at the front: pool x itself.
        rank6 = producers.get(node.input[0])
        rank5 = producers.get(rank6.input[0]) if rank6 is not None and rank6.op_type == "Unsqueeze" else None
        if rank5 is None or rank5.op_type != "Unsqueeze":
            rewritten.append(node)
            continue
        source = rank5.input[0]
        rewritten.extend(
            [
                helper.make_node("Transpose", [source], [nchw], perm=[0, 3, 1, 2], name=f"{prefix}/to_nchw"),
                helper.make_node(
                    "MaxPool",
                    [nchw],
                    [pooled],
                    kernel_shape=kernel[1:3],
                    strides=strides[1:3],
                    pads=[pads[1], pads[2], pads[5], pads[6]],
                    name=f"{prefix}/pool2d",
                ),
                helper.make_node("Transpose", [pooled], [nhwc], perm=[0, 2, 3, 1], name=f"{prefix}/to_nhwc"),
                helper.make_node(
                    "Unsqueeze", [nhwc, rank5.input[1]], [f"{prefix}/rank5"], name=f"{prefix}/unsqueeze0"
                ),
                helper.make_node(
                    "Unsqueeze", [f"{prefix}/rank5", rank6.input[1]], [node.output[0]], name=f"{prefix}/unsqueeze1"
                ),
            ]
        )
    del graph.node[:]
    graph.node.extend(rewritten)
    return model
