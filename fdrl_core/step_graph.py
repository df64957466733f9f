"""The flow's step graphs, built in ONNX from an artifact's drift graph (x [, y] -> drift).

    step_model(drift, eta, nu)           x, noise [, y]         -> x_next, drift   (one step)
    block_model(drift, eta, nu)          x, noise[k] [, y]      -> x_next          (k steps: a Scan)

Both append the update of flow.py, x - eta * drift + nu * noise, in the same order of
fp32 operations, to the drift graph's own nodes and weights. They are built here, torch-free,
because two packages need them: fdrl-export builds a TensorRT engine from step_model and
checks that very graph on ONNX Runtime; the runtime's ONNX Runtime backend runs block_model,
so that a call costs one dispatch per block of steps, not per step, and x and the noise stay
wherever the session keeps them (host or GPU).
"""
from __future__ import annotations

from .errors import FdrlError


class StepGraphError(FdrlError, ValueError):
    """The drift graph is not one the step graph can be built from."""


def _drift_io(graph):
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    if "x" not in inputs or "drift" not in outputs or set(inputs) - {"x", "y"}:
        raise StepGraphError(f"a drift graph has inputs x (and y) and an output drift; this one has inputs "
                             f"{inputs} and outputs {outputs}: export it again")
    return inputs


def _update_nodes(helper, x: str, drift: str, noise: str, out: str, eta: float, nu: float, tag: str):
    """(x - eta * drift) + nu * noise as nodes, in flow.euler_maruyama_step's order; the noise
    term is there even for nu = 0 (adding 0 * noise changes nothing), so the noise is always
    an input an engine binds."""
    c = lambda name, v: helper.make_node("Constant", [], [name],  # noqa: E731
                                         value=helper.make_tensor(name + "_value", 1, [], [float(v)]))
    return [c(f"{tag}eta", eta), helper.make_node("Mul", [drift, f"{tag}eta"], [f"{tag}eta_drift"]),
            helper.make_node("Sub", [x, f"{tag}eta_drift"], [f"{tag}x_drift"]),
            c(f"{tag}nu", nu), helper.make_node("Mul", [noise, f"{tag}nu"], [f"{tag}nu_noise"]),
            helper.make_node("Add", [f"{tag}x_drift", f"{tag}nu_noise"], [out])]


def _float_input(helper, name, dims):
    return helper.make_tensor_value_info(name, 1, dims)


def step_model(drift_model, eta: float, nu: float):
    """One step: x, noise [, y] -> x_next, drift (the engine's graph)."""
    import onnx
    from onnx import helper
    inputs = _drift_io(drift_model.graph)
    model = onnx.ModelProto()
    model.CopyFrom(drift_model)
    g = model.graph
    x_info = next(i for i in g.input if i.name == "x")
    noise = helper.make_tensor_value_info("noise", 1, None)
    noise.type.CopyFrom(x_info.type)
    g.input.insert(inputs.index("x") + 1, noise)
    g.node.extend(_update_nodes(helper, "x", "drift", "noise", "x_next", eta, nu, "fdrl_update_"))
    drift_out = next(o for o in g.output if o.name == "drift")
    x_next = helper.make_tensor_value_info("x_next", 1, None)
    x_next.type.CopyFrom(x_info.type)
    del g.output[:]
    g.output.extend([x_next, drift_out])
    return model


def block_model(drift_model, eta: float, nu: float):
    """k steps in one call, k = len(noise): x [B, ...], noise [k, B, ...] [, y [B]] -> x_next.

    A Scan whose body is the drift graph's nodes and weights plus the update. The weights
    sit in the body, not the outer graph: read from the outer scope, they made the MNIST
    ResNet's block 1.4-1.6x slower than one call per step (ONNX Runtime's weight prepacking
    and layout passes work on a graph's own initializers); in the body it is 1.04-1.08x
    faster (benchmarks/NOTES.md)."""
    from onnx import helper
    inputs = _drift_io(drift_model.graph)
    src = drift_model.graph
    x_info = next(i for i in src.input if i.name == "x")
    sample_dims = [d.dim_value or d.dim_param or None for d in x_info.type.tensor_type.shape.dim][1:]

    body_nodes = list(src.node) + _update_nodes(helper, "x", "drift", "noise", "x_next", eta, nu, "fdrl_update_")
    body_inputs = [_float_input(helper, "x", ["batch"] + sample_dims),
                   _float_input(helper, "noise", ["batch"] + sample_dims)]
    body = helper.make_graph(body_nodes, "fdrl_step", body_inputs,
                             [_float_input(helper, "x_next", ["batch"] + sample_dims)],
                             initializer=list(src.initializer), value_info=list(src.value_info))
    outer_inputs = [_float_input(helper, "x_in", ["batch"] + sample_dims),
                    _float_input(helper, "noise_in", ["steps", "batch"] + sample_dims)]
    if "y" in inputs:
        outer_inputs.append(next(i for i in src.input if i.name == "y"))
    scan = helper.make_node("Scan", ["x_in", "noise_in"], ["x_out"], body=body, num_scan_inputs=1)
    graph = helper.make_graph([scan], "fdrl_block", outer_inputs,
                              [_float_input(helper, "x_out", ["batch"] + sample_dims)])
    model = helper.make_model(graph, opset_imports=list(drift_model.opset_import),
                              ir_version=drift_model.ir_version)
    for f in drift_model.functions:  # the dynamo exporter may emit local functions
        model.functions.append(f)
    return model

