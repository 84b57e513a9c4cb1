"""ONNX -> Relax, including files the stock importer cannot build.

`torch.onnx.export` (the legacy TorchScript exporter, every opset) writes `x.chunk(2, 1)` as
Shape -> Gather -> Add/Div/Mul -> Slice. TVM's importer turns that into a `dynamic_strided_slice` whose bounds
are only known at run time, and the build then fails. The shapes are static once the input shape is, so
`fold_static_shapes` replaces every Shape of a statically shaped tensor by a constant and evaluates every node
whose inputs are all constant with ONNX's reference evaluator. What remains is the model's real compute, with
constant slice bounds, which imports as static `strided_slice`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .. import tvm_compat
from ..errors import ShuffleTVMError
from .graph import ImportedGraph

logger = logging.getLogger(__name__)

# Ops whose output is not a function of their inputs: never folded.
_NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
# Folded constants larger than this stay as nodes (weights are already initializers; this only guards memory).
_MAX_FOLDED_ELEMENTS = 1 << 24


def load_onnx_model(path: str | Path) -> Any:
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ShuffleTVMError(f"ONNX file '{path}' does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as err:  # protobuf DecodeError, onnx ValidationError, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ShuffleTVMError(f"'{path}' is not a valid ONNX model ({first[:160]})") from None
    return model


def _graph_inputs(model: Any) -> list[Any]:
    initializers = {init.name for init in model.graph.initializer}
    return [inp for inp in model.graph.input if inp.name not in initializers]


def _input_signature(model: Any, path: Path, batch: int | None) -> tuple[str, list[int]]:
    """The single image input's name and static shape; a symbolic batch dimension becomes `batch`."""
    from onnx import TensorProto

    inputs = _graph_inputs(model)
    if len(inputs) != 1:
        raise ShuffleTVMError(f"'{path}' has {len(inputs)} inputs; a ShuffleNet takes one image batch")
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type != TensorProto.FLOAT:
        raise ShuffleTVMError(f"'{path}': input '{inputs[0].name}' is not float32; a ShuffleNet takes float32 images")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    if len(dims) != 4:
        raise ShuffleTVMError(f"'{path}': input '{inputs[0].name}' has rank {len(dims)}; expected NCHW images")
    if any(d is None for d in dims[1:]):
        raise ShuffleTVMError(f"'{path}': input '{inputs[0].name}' has a dynamic C/H/W dimension {dims}; export it static")
    if dims[0] is None:
        dims[0] = batch or 1
    elif batch is not None and batch != dims[0]:
        raise ShuffleTVMError(f"'{path}' is exported for batch {dims[0]}, not {batch}; re-export it or drop --batch")
    return inputs[0].name, dims


def _has_channel_shuffle(model: Any) -> bool:
    """Reshape -> Transpose(perm 0,2,1,3,4) -> Reshape: the channel shuffle both torch exporters write."""
    for node in model.graph.node:
        if node.op_type == "Transpose":
            perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
            if perm and perm[0] == [0, 2, 1, 3, 4]:
                return True
    return False


def _evaluate(node: Any, constants: dict[str, np.ndarray], opsets: list[Any]) -> list[np.ndarray]:
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = [numpy_helper.from_array(constants[name], name) for name in dict.fromkeys(node.input) if name]
    outputs = [helper.make_empty_tensor_value_info(name) for name in node.output]
    graph = helper.make_graph([node], "fold", [], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=opsets)
    return ReferenceEvaluator(model).run(None, {})


def _static_shapes(model: Any) -> dict[str, list[int]]:
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model, data_prop=True)
    static: dict[str, list[int]] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            static[info.name] = [d.dim_value for d in dims]
    return static


def _fold_once(model: Any, counts: dict[str, int]) -> bool:
    """One sweep in graph order; returns whether anything was folded."""
    from onnx import numpy_helper

    static = _static_shapes(model)
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    original = set(constants)
    kept = []
    for node in model.graph.node:
        standard = node.domain in ("", "ai.onnx")
        if standard and node.op_type == "Shape" and node.input[0] in static:
            attrs = {a.name: a.i for a in node.attribute}
            dims = static[node.input[0]]
            constants[node.output[0]] = np.array(dims[attrs.get("start", 0) : attrs.get("end", len(dims))], np.int64)
            counts["shape_nodes_folded"] += 1
            continue
        if standard and node.op_type not in _NONDETERMINISTIC and all(n in constants for n in node.input if n):
            values = [np.asarray(v) for v in _evaluate(node, constants, list(model.opset_import))]
            if all(v.size <= _MAX_FOLDED_ELEMENTS for v in values):
                constants.update(zip(node.output, values))
                counts["constant_nodes_folded"] += 1
                continue
        kept.append(node)
    if len(kept) == len(model.graph.node):
        return False
    used = {name for node in kept for name in node.input} | {out.name for out in model.graph.output}
    initializers = [init for init in model.graph.initializer if init.name in used]
    initializers += [numpy_helper.from_array(constants[n], n) for n in constants if n in used and n not in original]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)
    del model.graph.value_info[:]
    return True


def fold_static_shapes(model: Any, input_name: str, input_shape: list[int]) -> tuple[Any, dict[str, int]]:
    """Fix the input shape, then fold Shape nodes of static tensors and every all-constant node into
    initializers, sweeping until nothing changes (a folded Shape can make a later Reshape's output static).
    Returns the new model and how many Shape and other nodes were folded."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    for inp in model.graph.input:
        if inp.name == input_name:
            for dim, value in zip(inp.type.tensor_type.shape.dim, input_shape):
                dim.Clear()
                dim.dim_value = value
    counts = {"shape_nodes_folded": 0, "constant_nodes_folded": 0}
    while _fold_once(model, counts):
        pass
    return model, counts


def import_onnx(path: str | Path, batch: int | None = None, require_shuffle: bool = True) -> ImportedGraph:
    """Load, check, repair and import an ONNX ShuffleNet; input name and shape are read from the file."""
    path = Path(path)
    model = load_onnx_model(path)
    input_name, input_shape = _input_signature(model, path, batch)
    if require_shuffle and not _has_channel_shuffle(model):
        raise ShuffleTVMError(
            f"'{path}' does not look like a ShuffleNet: it has no channel shuffle "
            "(Reshape -> Transpose(0,2,1,3,4) -> Reshape)"
        )
    repaired, counts = fold_static_shapes(model, input_name, input_shape)
    if counts["shape_nodes_folded"]:
        logger.info(
            "%s: folded %d Shape and %d constant nodes into static values (torch.onnx chunk -> Slice)",
            path.name, counts["shape_nodes_folded"], counts["constant_nodes_folded"],
        )
    try:
        mod = tvm_compat.from_onnx(repaired, {input_name: input_shape})
    except Exception as err:  # the importer raises for unsupported ops and attributes
        last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise ShuffleTVMError(f"TVM's ONNX importer cannot import '{path}': {last[:200]}") from None
    return ImportedGraph(
        mod=mod, name=path.stem, source="onnx", input_name=input_name, input_shape=input_shape, repairs=counts
    )
