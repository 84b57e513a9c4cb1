"""ONNX import: files that torch.onnx writes (both exporters, opsets 13-18) and a user's own files."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from shuffletvm.errors import ShuffleTVMError
from shuffletvm.frontend.onnx import fold_static_shapes, import_onnx
from shuffletvm.models import create_model
from shuffletvm.parity import ParityConfig, check_parity

from .conftest import assert_user_error, cli, image


def _export(name: str, path, exporter: str = "legacy", opset: int = 13, dynamic_batch: bool = False) -> None:
    kwargs = {"opset_version": opset, "input_names": ["images"], "output_names": ["logits"], "dynamo": exporter == "dynamo"}
    if dynamic_batch:
        kwargs["dynamic_axes" if exporter == "legacy" else "dynamic_shapes"] = (
            {"images": {0: "batch"}} if exporter == "legacy" else ({0: torch.export.Dim("batch", min=1, max=64)},)
        )
    torch.onnx.export(create_model(name), (torch.zeros(1, 3, 224, 224),), str(path), **kwargs)


@pytest.fixture(scope="module")
def legacy_v2(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "v2_legacy13.onnx"
    _export("shufflenet_v2_x0_5", path, "legacy", 13)
    return path


def test_legacy_export_has_dynamic_chunk_and_repair_folds_it_exactly(legacy_v2):
    model = onnx.load(str(legacy_v2))
    assert "Shape" in {n.op_type for n in model.graph.node}  # the graph the stock importer cannot build
    repaired, counts = fold_static_shapes(model, "images", [1, 3, 224, 224])
    ops = {n.op_type for n in repaired.graph.node}
    assert counts["shape_nodes_folded"] == 13 and not ops & {"Shape", "Gather", "Div"}
    assert "Slice" in ops and "Conv" in ops
    x = image()
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"images": x})[0]
    after = ort.InferenceSession(repaired.SerializeToString()).run(None, {"images": x})[0]
    np.testing.assert_array_equal(before, after)


def test_stock_importer_fails_on_the_unrepaired_file(legacy_v2):
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    # the Shape/Gather/Slice chain leaves the split's slices (and the concat of their results) with symbolic
    # shapes, which legalization skips: VM codegen then meets an operator it cannot emit
    with pytest.raises(tvm.error.InternalError, match="cannot emit this Relax operator"):
        relax.build(from_onnx(onnx.load(str(legacy_v2)), keep_params_in_input=False), target="llvm")


@pytest.mark.parametrize(
    "model, exporter, opset",
    [
        ("shufflenet_v2_x0_5", "legacy", 13),
        ("shufflenet_v2_x1_0", "legacy", 15),
        ("shufflenet_v2_x0_5", "legacy", 18),
        ("shufflenet_v2_x1_0", "dynamo", 18),
        ("shufflenet_v1_g3_x0_5", "legacy", 13),
        ("shufflenet_v1_g8_x1_0", "dynamo", 18),
        ("shufflenet_v1_g2_x0_5", "legacy", 17),
    ],
)
def test_onnx_parity(model, exporter, opset):
    report = check_parity(ParityConfig(model=model, frontend="onnx", onnx_exporter=exporter, opset=opset, seeds=2))
    assert report.passed, report.rows
    assert all(row.top1_agree == 1.0 for row in report.rows)
    # Every shuffle handled, in the form each exporter writes it. V1: read through by the grouped conv after it.
    # V2: the last one read through by conv5; the legacy exporter's split is two Slices after the importer's
    # repair (one kernel each: 13 split units x 2 + 2 stage ends), otherwise one kernel per unit (15).
    counts = report.pass_counts
    if model.startswith("shufflenet_v1"):
        assert counts.get("FoldShuffleIntoGroupedConv") == 16 and "FuseConcatShuffleSplit" not in counts, counts
    else:
        assert counts.get("FoldShuffleIntoGroupedConv") == 1, counts
        assert counts.get("FuseConcatShuffleSplit") == (28 if exporter == "legacy" else 15), counts


def test_user_file_with_dynamic_batch_reads_name_and_takes_batch(tmp_path):
    path = tmp_path / "user.onnx"
    _export("shufflenet_v2_x0_5", path, "legacy", 17, dynamic_batch=True)
    graph = import_onnx(path, batch=3)
    assert graph.input_name == "images" and graph.input_shape == [3, 3, 224, 224]
    out = tmp_path / "user.so"
    proc = cli("build", "--onnx", str(path), "--batch", "2", "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    from shuffletvm.runtime import load

    module = load(out)
    assert module.input_shape == (2, 3, 224, 224) and module.metadata["input_name"] == "images"
    x = image(2)
    ref = ort.InferenceSession(str(path)).run(None, {"images": x})[0]
    np.testing.assert_allclose(module.run(x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_missing_onnx_file(tmp_path):
    assert_user_error(cli("build", "--onnx", str(tmp_path / "none.onnx"), "-o", str(tmp_path / "m.so"), "-q"),
                      "does not exist")


def test_corrupt_onnx_file(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07garbage-not-protobuf" * 50)
    assert_user_error(cli("build", "--onnx", str(path), "-o", str(tmp_path / "m.so"), "-q"), "not a valid ONNX model")
    assert not (tmp_path / "m.so").exists()


def test_truncated_onnx_file(tmp_path, legacy_v2):
    path = tmp_path / "truncated.onnx"
    path.write_bytes(legacy_v2.read_bytes()[:5000])
    assert_user_error(cli("build", "--onnx", str(path), "-o", str(tmp_path / "m.so"), "-q"), "not a valid ONNX model")


def test_non_shufflenet_onnx_file(tmp_path):
    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], np.ones(216, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "plain_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 222, 222])], initializer=[weight],
    )
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert_user_error(cli("build", "--onnx", str(path), "-o", str(tmp_path / "m.so"), "-q"), "does not look like a ShuffleNet")
    with pytest.raises(ShuffleTVMError, match="channel shuffle"):
        import_onnx(path)


def test_onnx_with_weights_is_refused(tmp_path, legacy_v2):
    proc = cli("build", "--onnx", str(legacy_v2), "--weights", str(legacy_v2), "-o", str(tmp_path / "m.so"), "-q")
    assert_user_error(proc, "carries its own weights")
