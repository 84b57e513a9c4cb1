"""Hand-written TensorIR kernels that graph passes insert with `call_tir` (already scheduled for the target)."""
