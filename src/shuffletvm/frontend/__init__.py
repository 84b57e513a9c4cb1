"""Importers into Relax. Each returns an `ImportedGraph`; `onnx` and `torch_export` are imported on use."""

from .graph import ImportedGraph

__all__ = ["ImportedGraph"]
