"""benchmarks/: the scripts behind the committed results still import (they import each other and the package),
and the layer kinds `vendor_layers.py` sums ONNX Runtime's nodes by."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_every_benchmark_script_imports():
    """Each script imported as it runs (from benchmarks/, its siblings on the path), in a fresh interpreter: a
    helper moved into the package and still imported from its old script fails here, not in the next session's
    measurement."""
    scripts = sorted(p.stem for p in BENCHMARKS.glob("*.py"))
    assert len(scripts) > 10, scripts
    code = "import importlib, sys\nsys.path.insert(0, '.')\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    proc = subprocess.run([sys.executable, "-c", code, *scripts], cwd=BENCHMARKS, capture_output=True, text=True, check=False,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_vendor_layers_kinds():
    """A 3x3 conv reading the image's 3 channels is the stem, whatever ONNX Runtime padded its output channels to
    (24 -> 32 in its blocked layout); depthwise convs by output plane; 1x1 convs by direction and plane;
    FuseExpandDepthwise's and FuseGroupedConvPair's kernels rows of their own."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from vendor_layers import conv_kind, tvm_kind
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert conv_kind((24, 3, 3, 3), 3, 32, 112 * 112) == "stem (conv 3x3 + max pool)"
    assert conv_kind((24, 3, 3, 3), 3, 24, 112 * 112) == "stem (conv 3x3 + max pool)"
    assert conv_kind((60, 1, 3, 3), 60, 60, 28 * 28) == "depthwise 3x3 -> 28x28"
    assert conv_kind((60, 24, 1, 1), 24, 60, 56 * 56) == "1x1 conv expand @56x56"
    assert conv_kind((60, 80, 1, 1), 240, 60, 28 * 28) == "1x1 conv compress @28x28"
    assert conv_kind((116, 116, 1, 1), 116, 116, 14 * 14) == "1x1 conv same @14x14"
    fused = [(1, 24, 56, 56), (24, 64), (64,), (3, 3, 64), (64,), (1, 58, 28, 28)]
    assert tvm_kind("expand_depthwise", fused, False) == "1x1 conv @56x56 + depthwise 3x3 -> 28x28, one kernel"
    pair = [(1, 60, 28, 28), (240, 20), (240,), (1, 240, 28, 28), (60, 80), (60,), (1, 240, 28, 28), (1, 60, 28, 28)]
    assert tvm_kind("grouped_conv_pair1", pair, False) == "1x1 conv expand @28x28 + the next unit's compress, one kernel"
