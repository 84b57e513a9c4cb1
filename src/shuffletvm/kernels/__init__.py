"""Hand-written TensorIR kernels that graph passes insert with `call_tir` (already scheduled for the target)."""

OPAQUE = 8  # relax OpPatternKind::kOpaque: operator fusion keeps an inserted kernel separate
