"""The compile pipeline as a list of named phases, read top to bottom.

Each phase is a `tvm.transform.Sequential`; a phase that does nothing for a configuration is an empty
Sequential, never an `if` in the middle. `make_pipeline` wraps the phases in one module pass that logs each
phase and, when asked, writes the module's TVMScript after it (`--dump-dir`).

The stock phases are TVM's own per-target lists (`tvm_compat.stock_passes`), so a build with no
ShuffleNet-specific option is exactly TVM's default pipeline: the "untuned, stock" baseline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm
from tvm import relax

from . import tvm_compat

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineOptions:
    dump_dir: Path | None = None


@dataclass(frozen=True)
class Phase:
    name: str
    passes: tvm.transform.Pass


def phases(target: Any, options: PipelineOptions) -> list[Phase]:
    """The phases for `target` (a tvm.target.Target), in order."""
    stock = tvm_compat.stock_passes(target)
    return [
        # Route ops to libraries (sampling, sort/scan); nothing in ShuffleNet uses them.
        Phase("library-dispatch", tvm.transform.Sequential(stock["library_dispatch"])),
        # ShuffleNet graph rewrites (BatchNorm folding, shuffle fusion and folding) plug in here.
        Phase("graph-optimize", tvm.transform.Sequential([])),
        # Relax ops -> TensorIR, operator fusion; on GPU targets also dlight's default thread bindings.
        Phase("legalize", tvm.transform.Sequential(stock["legalize"])),
        # Hand-written schedules and tuning records replace default kernels here.
        Phase("schedule", tvm.transform.Sequential([])),
        # Dataflow blocks -> explicit calls; then memory planning and VM lowering.
        Phase("dataflow-lower", tvm.transform.Sequential(stock["dataflow_lower"])),
        Phase("finalize", tvm.transform.Sequential(stock["finalize"])),
    ]


def make_pipeline(target: Any, options: PipelineOptions | None = None) -> tvm.transform.Pass:
    options = options or PipelineOptions()
    ordered = phases(target, options)
    if options.dump_dir is not None:
        options.dump_dir.mkdir(parents=True, exist_ok=True)

    @tvm.transform.module_pass(opt_level=0, name="ShuffleTVMPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            for index, phase in enumerate(ordered):
                start = time.perf_counter()
                mod = phase.passes(mod)
                logger.debug("phase %-16s %.2f s", phase.name, time.perf_counter() - start)
                if options.dump_dir is not None:
                    path = options.dump_dir / f"{index:02d}_{phase.name}.py"
                    path.write_text(mod.script(show_meta=False))
        return mod

    return _pipeline


def compile_module(mod: tvm.IRModule, target: Any, options: PipelineOptions | None = None) -> Any:
    """Relax module -> executable (not yet linked). Code generation runs inside the target's scope, which the
    CUDA compile callback reads for the GPU architecture."""
    tvm_compat.prepare_codegen(target)
    with target:
        return relax.build(mod, target=target, relax_pipeline=make_pipeline(target, options))
