"""PyTorch -> Relax through torch.export (the only PyTorch importer TVM 0.27 has; the TorchScript/Relay path
is gone). Weights become constants of the module, so the built `.so` needs no parameter file."""

from __future__ import annotations

import logging

import torch
from torch import nn

from .. import tvm_compat
from ..errors import ShuffleTVMError
from .graph import ImportedGraph

logger = logging.getLogger(__name__)


def import_torch(model: nn.Module, batch: int, name: str, image: tuple[int, int, int] = (3, 224, 224)) -> ImportedGraph:
    shape = (batch, *image)
    model = model.eval()
    with torch.no_grad():
        try:
            exported = torch.export.export(model, (torch.zeros(shape),))
        except Exception as err:  # torch.export raises many types for untraceable models
            raise ShuffleTVMError(f"torch.export cannot trace {name}: {str(err).splitlines()[0][:200]}") from None
    mod = tvm_compat.from_exported_program(exported)
    logger.debug("imported %s from torch.export (input %s)", name, shape)
    return ImportedGraph(mod=mod, name=name, source="torch.export", input_name="x", input_shape=list(shape))
