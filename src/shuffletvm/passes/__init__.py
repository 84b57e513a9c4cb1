"""shuffletvm's Relax passes, one per file, named after the class. Shared invariants: passes/README.md."""

from .fold_batch_norm import FoldBatchNorm
from .fuse_concat_shuffle_split import FuseConcatShuffleSplit

__all__ = ["FoldBatchNorm", "FuseConcatShuffleSplit"]
