"""Where a vendor runtime wins, layer by layer: ONNX Runtime's own per-node times (its profiler) beside shuffletvm's
kernels in sequence (`sequence_profile.py`'s replay), in one run, the two taking turns round by round, summed by
kind of layer (stem, 1x1 convs by plane and direction, depthwise convs by plane, data movement, classifier).

    python benchmarks/vendor_layers.py shufflenet_v1_g3_x1_0 [--batch 1] [--rounds 20] [--log-dir LOG_ROOT]

ONNX Runtime runs the same export `shuffletvm compare` measures (torch.onnx, dynamo, opset 18), with the same
session options (all graph optimizations, so NCHWc layout and Conv+Add+ReLU fusion), 2 threads. Its per-node
times exclude the session's own overhead between nodes; "in sequence" TVM times exclude the VM's. The end-to-end
medians come first, from interleaved rounds with ONNX Runtime's profiling off, then the per-layer rounds with a
profiling session (one session at a time: two sessions' spinning threads would contend for the 2 cores).
What counts as data movement differs: ONNX Runtime's reorders into and out of NCHWc, its shuffles
(Reshape/Transpose), concats and pools; shuffletvm's concat/shuffle kernels and pools (most of its shuffles are
folded into the convs, and its concats written in place). A stride-2 unit's 1x1 conv and depthwise conv that
shuffletvm runs as one kernel (FuseExpandDepthwise) get a row of their own, as do a V1 unit's last grouped 1x1
conv and the next unit's first (FuseGroupedConvPair); ONNX Runtime's two nodes stay in their rows.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from shuffletvm.bench.sequence import kernel_calls

SAME_CHANNELS = 16  # channel counts this close are a conv's "same" (a vector block of padding)
MOVEMENT_OPS = {"ReorderInput", "ReorderOutput", "Reshape", "Transpose", "Concat", "AveragePool", "Split", "Slice",
                "Gather", "Shape", "Flatten", "Squeeze", "Unsqueeze"}


def conv_kind(weight: tuple[int, ...], cin: int, cout: int, plane: int) -> str:
    """A conv's kind from its weight's shape (OIHW (O, Cg, kh, kw), or packed (O/B, Cg, B) for a 1x1) and its
    input and output channels; channel counts within `SAME_CHANNELS` of each other (padded to whole vector
    blocks) are the same."""
    side = round(plane ** 0.5)
    if len(weight) == 4 and weight[2:] == (3, 3) and weight[1] == 1:
        return f"depthwise 3x3 -> {side}x{side}"
    if len(weight) == 4 and weight[2:] == (3, 3) and cin == 3:  # the image's channels (ORT pads the output's)
        return "stem (conv 3x3 + max pool)"
    direction = "same" if abs(cout - cin) <= SAME_CHANNELS else "compress" if cout < cin else "expand"
    return f"1x1 conv {direction} @{side}x{side}"


def tvm_conv_channels(shapes: list[tuple[int, ...]], has_channel_table: bool) -> tuple[int, int]:
    """(input, output) channels of a shuffletvm conv kernel, from its weight: its data and output may be a
    buffer that holds more channels (a V2 stage buffer, a concat written in place). A kernel with a channel table
    (KeepIdentityInPlace's) is ungrouped; otherwise the groups are the data's channels over the weight's."""
    data, weight = shapes[0], shapes[1]
    out, per_group = (weight[0] * weight[2], weight[1]) if len(weight) == 3 else (weight[0], weight[1])
    groups = 1 if has_channel_table else max(1, data[1] // per_group)
    return per_group * groups, out


def ort_kind(op: str, inputs: list[list[int]], output: list[int]) -> str:
    if op in ("Conv", "FusedConv"):
        return conv_kind(tuple(inputs[1]), inputs[0][1], output[1], output[2] * output[3])
    if op == "MaxPool":
        return "stem (conv 3x3 + max pool)"
    if op in ("Gemm", "MatMul"):
        return "classifier"
    if op in ("ReduceMean", "GlobalAveragePool"):
        return "global pool"
    return "data movement (layout, shuffle, concat, pool)" if op in MOVEMENT_OPS else f"other ({op})"


def tvm_kind(name: str, shapes: list[tuple[int, ...]], has_channel_table: bool) -> str:
    if name.startswith("stem_conv_pool"):
        return "stem (conv 3x3 + max pool)"
    if "matmul" in name or "dense" in name:
        return "classifier"
    if name.startswith("mean"):
        return "global pool"
    if name.startswith("expand_depthwise"):  # FuseExpandDepthwise's: ONNX Runtime's two nodes stay in their rows
        side, out_side = shapes[0][2], shapes[-1][2]
        return f"1x1 conv @{side}x{side} + depthwise 3x3 -> {out_side}x{out_side}, one kernel"
    if name.startswith("grouped_conv_pair"):  # FuseGroupedConvPair's: a unit's last 1x1 conv, the next one's first
        side = shapes[0][2]
        return f"1x1 conv expand @{side}x{side} + the next unit's compress, one kernel"
    if "conv" in name and len(shapes) >= 3 and len(shapes[0]) == 4:
        out = shapes[-1]
        cin, cout = tvm_conv_channels(shapes, has_channel_table)
        return conv_kind(shapes[1], cin, cout, out[2] * out[3])
    return "data movement (layout, shuffle, concat, pool)"


def ort_node_times(profile: Path, skip: int) -> dict[str, tuple[str, list[float]]]:
    """node name -> (kind, its per-run times in us) from an ONNX Runtime profile, the first `skip` runs dropped."""
    times: dict[str, list[float]] = defaultdict(list)
    kinds: dict[str, str] = {}
    for event in json.loads(profile.read_text()):
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        node, args = event["name"][: -len("_kernel_time")], event["args"]
        times[node].append(float(event["dur"]))
        if node not in kinds:
            shapes = [list(next(iter(s.values()))) for s in args.get("input_type_shape", [])]
            output = [list(next(iter(s.values()))) for s in args.get("output_type_shape", [])]
            kinds[node] = ort_kind(args.get("op_name", ""), shapes, output[0] if output else [])
    return {node: (kinds[node], runs[skip:]) for node, runs in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=10, help="runs (sequences) of each runtime per round")
    parser.add_argument("--log-dir", type=Path, default=None, help="tuning log root (default: tuning_logs/)")
    args = parser.parse_args()

    import onnxruntime as ort

    from shuffletvm import runtime
    from shuffletvm.bench.runtimes import Context, onnxruntime_session, set_thread_env
    from shuffletvm.build import BuildConfig, build
    from shuffletvm.models.registry import create_model

    threads = 2
    set_thread_env(threads)
    model = create_model(args.model).eval()
    x = np.random.default_rng(0).random((args.batch, 3, 224, 224), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(model=model, name=args.model, example=x, threads=threads, workdir=Path(tmp))
        result = build(BuildConfig(output=Path(tmp) / "tvm.so", model=args.model, batch=args.batch,
                                   log_dir=args.log_dir))
        tvm_model = runtime.load(result.path)

        feed = {"input": x}
        end_to_end: dict[str, list[float]] = defaultdict(list)
        plain = onnxruntime_session(ctx)  # first end to end, then the profile: two sessions' threads would contend
        expected = tvm_model.run(x)
        np.testing.assert_allclose(plain.run(None, feed)[0], expected, rtol=1e-3,
                                   atol=1e-4 * float(np.abs(expected).max()))
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.runs):
                plain.run(None, feed)
            end_to_end["onnxruntime"].append((time.perf_counter() - start) / args.runs)
            end_to_end["tvm"].append(float(np.median(tvm_model.time_run(x, repeat=args.runs))))
        del plain
        profiled = onnxruntime_session(ctx, profile_prefix=Path(tmp) / "ort")
        for _ in range(args.runs):  # warm-up, dropped from the profile below
            profiled.run(None, feed)
        calls = kernel_calls(tvm_model, x)
        in_sequence: list[list[float]] = [[] for _ in calls]
        for _ in range(args.rounds):
            for _ in range(args.runs):
                profiled.run(None, feed)
            for _ in range(args.runs):  # as many sequences: the medians shed the first, which the other's
                for i, (_name, func, kernel_args) in enumerate(calls):  # spinning threads slow
                    start = time.perf_counter()
                    func(*kernel_args)
                    in_sequence[i].append(time.perf_counter() - start)
        nodes = ort_node_times(Path(profiled.end_profiling()), args.runs)

    ort_sum: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for kind, runs in nodes.values():
        ort_sum[kind][0] += float(np.median(runs))
        ort_sum[kind][1] += 1
    tvm_sum: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for (name, _func, kernel_args), times in zip(calls, in_sequence):
        table = any(str(getattr(a, "dtype", "")) == "int32" for a in kernel_args)
        shapes = [tuple(int(s) for s in a.shape) for a in kernel_args  # the tensors, not a channel table
                  if hasattr(a, "shape") and str(a.dtype) != "int32"]
        kind = tvm_kind(re.sub(r"\d+$", "", name), shapes, table)
        tvm_sum[kind][0] += float(np.median(times)) * 1e6
        tvm_sum[kind][1] += 1
    ort_ms, tvm_ms = (np.median(end_to_end[k]) * 1e3 for k in ("onnxruntime", "tvm"))
    print(f"{args.model}, batch {args.batch}, {threads} threads, {args.rounds} interleaved rounds: end to end "
          f"shuffletvm {tvm_ms:.2f} ms ({result.kernels_tuned}/{result.kernels_total} kernels from the tuning log), "
          f"ONNX Runtime {ort_ms:.2f} ms ({ort.__version__}, profiling off); {tvm_ms / ort_ms:.2f}x.\n")
    print("| layers | ORT nodes | ORT us | shuffletvm kernels | shuffletvm us in sequence | shuffletvm - ORT us | "
          "ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    kinds = sorted(set(ort_sum) | set(tvm_sum), key=lambda k: -(tvm_sum[k][0] - ort_sum[k][0]))
    for kind in kinds:
        (o_us, o_n), (t_us, t_n) = ort_sum[kind], tvm_sum[kind]
        ratio = f"{t_us / o_us:.2f}x" if o_us else "-"
        print(f"| {kind} | {o_n} | {o_us:.0f} | {t_n} | {t_us:.0f} | {t_us - o_us:+.0f} | {ratio} |")
    o_total, t_total = (sum(v[0] for v in s.values()) for s in (ort_sum, tvm_sum))
    print(f"| all | {sum(v[1] for v in ort_sum.values())} | {o_total:.0f} | {len(calls)} | {t_total:.0f} | "
          f"{t_total - o_total:+.0f} | {t_total / o_total:.2f}x |")
    print(f"\nThe sums are not the end-to-end times ({o_total / 1e3:.2f} vs {ort_ms:.2f} ms, {t_total / 1e3:.2f} vs "
          f"{tvm_ms:.2f} ms): every node or kernel timed alone carries a per-call overhead (ONNX Runtime's profiler, "
          "the replay's timer), most of a small one's time. Compare the rows with each other.")


if __name__ == "__main__":
    main()
