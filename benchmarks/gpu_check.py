"""On a GPU machine: do the CUDA modules built without a GPU compute what PyTorch computes, and how do they
compare with PyTorch's cuDNN path? Also checks that torchvision's ShuffleNet V2 state_dict loads into ours.

Run through scripts/gpu_check.sh (TVM runtime only, no compiler). Untuned TVM here means TVM's default GPU
schedules (dlight); tuning comes with `shuffletvm tune`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from shuffletvm.models import create_model
from shuffletvm.models.registry import randomize_batchnorm
from shuffletvm.parity import DEFAULT_RTOL, compare_outputs
from shuffletvm.runtime import load


def torch_cuda_ms(model: torch.nn.Module, x: torch.Tensor, runs: int = 200) -> float:
    with torch.no_grad():
        for _ in range(20):
            model(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def check_model(name: str, bundle: Path) -> dict:
    model = create_model(name, weights=bundle / f"{name}.pt")
    module = load(bundle / f"{name}.cuda.so")
    inputs = [np.random.default_rng(s).standard_normal(module.input_shape).astype(np.float32) for s in range(3)]
    with torch.no_grad():
        ref_cpu = [model(torch.from_numpy(x)).numpy() for x in inputs]
    outs = [module.run(x) for x in inputs]
    rows = [compare_outputs(s, o, r).__dict__ for s, (o, r) in enumerate(zip(outs, ref_cpu))]

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    gpu_model = model.cuda()
    x_gpu = torch.from_numpy(inputs[0]).cuda()
    with torch.no_grad():
        cudnn_rows = [compare_outputs(0, gpu_model(x_gpu).cpu().numpy(), ref_cpu[0]).__dict__]
    tvm_ms = 1e3 * statistics.median(module.time_run(inputs[0], repeat=50, number=10))
    eager_ms = torch_cuda_ms(gpu_model, x_gpu)
    torch.backends.cudnn.benchmark = True
    eager_bench_ms = torch_cuda_ms(gpu_model, x_gpu)
    return {
        "model": name, "parity_vs_torch_cpu": rows, "cudnn_vs_torch_cpu": cudnn_rows,
        "passed": max(r["rel_err"] for r in rows) <= DEFAULT_RTOL,
        "tvm_untuned_ms": tvm_ms, "torch_cudnn_fp32_ms": eager_ms, "torch_cudnn_benchmark_fp32_ms": eager_bench_ms,
    }


def torchvision_layout() -> dict:
    import torchvision

    results = {}
    for width in ("0_5", "1_0", "1_5", "2_0"):
        torch.manual_seed(0)
        theirs = getattr(torchvision.models, f"shufflenet_v2_x{width}")()
        randomize_batchnorm(theirs, seed=1)
        ours = create_model(f"shufflenet_v2_x{width}")
        ours.load_state_dict(theirs.state_dict(), strict=True)
        x = torch.randn(2, 3, 224, 224)
        with torch.no_grad():
            results[width] = float((ours.eval()(x) - theirs.eval()(x)).abs().max())
    return {"torchvision": torchvision.__version__, "max_abs_diff_per_width": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, default=Path(".gpu"))
    parser.add_argument("--out", type=Path, default=Path(".gpu/out/gpu_check.json"))
    args = parser.parse_args()
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "models": []}
    for so in sorted(args.bundle.glob("*.cuda.so")):
        result = check_model(so.name.removesuffix(".cuda.so"), args.bundle)
        report["models"].append(result)
        print(json.dumps(result), flush=True)
    report["torchvision_layout"] = torchvision_layout()
    print(json.dumps(report["torchvision_layout"]), flush=True)
    args.out.write_text(json.dumps(report, indent=2))
    print("| model | TVM vs torch rel err | TVM untuned ms | cuDNN fp32 ms | cuDNN benchmark ms |")
    print("|---|---:|---:|---:|---:|")
    for m in report["models"]:
        rel = max(r["rel_err"] for r in m["parity_vs_torch_cpu"])
        print(f"| {m['model']} | {rel:.2e} | {m['tvm_untuned_ms']:.3f} | {m['torch_cudnn_fp32_ms']:.3f} | "
              f"{m['torch_cudnn_benchmark_fp32_ms']:.3f} |")


if __name__ == "__main__":
    main()
