"""shuffletvm's Relax passes, one per file, named after the class. Shared invariants: passes/README.md."""

from .apply_hand_schedules import ApplyHandSchedules
from .fold_batch_norm import FoldBatchNorm
from .fuse_concat_shuffle_split import FuseConcatShuffleSplit

__all__ = ["ApplyHandSchedules", "FoldBatchNorm", "FuseConcatShuffleSplit"]
