"""What an importer hands to the compile pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ImportedGraph:
    mod: Any  # tvm.IRModule with one function, `main`, taking the image batch
    name: str  # model name, or the ONNX file's stem
    source: str  # "torch.export" or "onnx"
    input_name: str
    input_shape: list[int]
    input_dtype: str = "float32"
    repairs: dict[str, int] = field(default_factory=dict)  # what the importer had to fix, counted
