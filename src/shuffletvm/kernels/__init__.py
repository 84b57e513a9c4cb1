"""Hand-written TensorIR kernels that graph passes insert with `call_tir` (already scheduled for the target)."""

OPAQUE = 8  # relax OpPatternKind::kOpaque: operator fusion keeps an inserted kernel separate
# A kernel attribute: its parallel tasks are the row bands PartitionRowsAcrossCores gives each core already
SPLIT_ROWS = "shuffletvm.split_rows"


def registers(lanes: int) -> int:
    """Vector registers of the CPU targets with `lanes` fp32 lanes: AVX2 16 (8 lanes); AVX-512 and NEON 32."""
    return 16 if lanes == 8 else 32
