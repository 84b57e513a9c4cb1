"""The model zoo: 24 named variants, their builders, and their cost (MACs, parameters)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ShuffleTVMError
from .shufflenet_v1 import shufflenet_v1
from .shufflenet_v2 import shufflenet_v2

WIDTHS = ["0_5", "1_0", "1_5", "2_0"]
V1_GROUPS = [1, 2, 3, 4, 8]
INPUT_SHAPE = (3, 224, 224)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "v1" or "v2"
    width: float
    groups: int  # V1's group count; 2 for V2 (its shuffle groups)
    build: Callable[[], nn.Module]


def _registry() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for width in WIDTHS:
        name = f"shufflenet_v2_x{width}"
        specs[name] = ModelSpec(name, "v2", float(width.replace("_", ".")), 2, partial(shufflenet_v2, width))
    for groups in V1_GROUPS:
        for width in WIDTHS:
            name = f"shufflenet_v1_g{groups}_x{width}"
            build = partial(shufflenet_v1, groups, width)
            specs[name] = ModelSpec(name, "v1", float(width.replace("_", ".")), groups, build)
    return specs


MODELS: dict[str, ModelSpec] = _registry()
DEFAULT_MODEL = "shufflenet_v2_x1_0"


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ShuffleTVMError(f"unknown model '{name}'; `shuffletvm models` lists the {len(MODELS)} variants")
    return MODELS[name]


def create_model(name: str, weights: str | Path | None = None, seed: int = 0) -> nn.Module:
    """Build `name` in eval mode: with `weights` loaded (a state_dict file), else with seeded random weights
    whose BatchNorm statistics are realistic (calibrated on random data, then perturbed — never identity)."""
    spec = get_spec(name)
    torch.manual_seed(seed)
    model = spec.build()
    if weights is not None:
        load_weights(model, name, weights)
    else:
        randomize_batchnorm(model, seed)
    return model.eval()


def _load_failure(err: Exception) -> str:
    """What `torch.load(weights_only=True)` found wrong, without its boilerplate: its refusal is a paragraph between
    one on the `weights_only` default and one pointing at the docs (a blocked GLOBAL, or an unpickler opcode where the
    file is no pickle at all); other errors (a damaged zip archive) in their first sentence."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    if text.startswith("Weights only load failed"):
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
        reasons = [p for p in paragraphs[1:] if not p.startswith("Check the documentation")]
        if not reasons:
            return "torch.load(weights_only=True) refused it"
        if reasons[0].startswith("Unsupported operand"):
            return f"not a file torch.save wrote: the unpickler found {reasons[0][0].lower()}{reasons[0][1:]}"
        return reasons[0].splitlines()[0].rstrip(".")[:200]
    return text.splitlines()[0].split(". ")[0].rstrip(".")[:200]


def load_weights(model: nn.Module, name: str, path: str | Path) -> None:
    """Load a state_dict safely: `weights_only=True` refuses files that carry pickled code."""
    path = Path(path)
    if not path.is_file():
        raise ShuffleTVMError(f"weights file '{path}' does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise ShuffleTVMError(
            f"cannot load weights '{path}' safely ({_load_failure(err)}); pass a plain state_dict saved with "
            "torch.save"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ShuffleTVMError(f"weights file '{path}' holds no state_dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what} {len(keys)} (e.g. {keys[0]})"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise ShuffleTVMError(f"weights file '{path}' is not for {name}: {detail}")
    model.load_state_dict(state)


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, seed: int = 0, batches: int = 2) -> None:
    """Give every BatchNorm realistic statistics: run random images through in train mode with a cumulative
    average, then perturb gamma, beta and the running statistics so that no layer is an identity."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for _ in range(batches):
        model(torch.randn(4, *INPUT_SHAPE, generator=gen))
    for bn in bns:
        n = bn.num_features
        bn.weight.copy_(0.5 + torch.rand(n, generator=gen))
        bn.bias.copy_(0.2 * torch.randn(n, generator=gen))
        bn.running_mean.add_(0.1 * torch.randn(n, generator=gen) * bn.running_var.sqrt())
        bn.running_var.mul_(0.8 + 0.4 * torch.rand(n, generator=gen))
        bn.momentum = 0.1
    model.eval()


@dataclass(frozen=True)
class ModelCost:
    macs: int
    params: int


@torch.no_grad()
def model_cost(model: nn.Module, image: tuple[int, int, int] = INPUT_SHAPE) -> ModelCost:
    """Multiply-accumulates of the convolutions and the classifier for one image (the papers' 'FLOPs')."""
    macs = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        was_training = model.training
        model.eval()
        model(torch.zeros(1, *image))
        model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return ModelCost(macs=macs, params=sum(p.numel() for p in model.parameters()))
