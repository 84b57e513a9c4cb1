"""shuffletvm's Relax passes, one per file, named after the class. Shared invariants: passes/README.md."""

from .apply_batch_one_records import ApplyBatchOneRecords
from .apply_hand_schedules import ApplyHandSchedules
from .fold_batch_norm import FoldBatchNorm
from .fold_shuffle_into_grouped_conv import FoldShuffleIntoGroupedConv
from .fuse_concat_shuffle_split import FuseConcatShuffleSplit
from .fuse_expand_depthwise import FuseExpandDepthwise
from .fuse_grouped_conv_pair import FuseGroupedConvPair
from .fuse_stem_conv_pool import FuseStemConvPool
from .keep_identity_in_place import KeepIdentityInPlace
from .pack_conv1x1_weights import PackConv1x1Weights
from .pack_matmul_weights import PackMatmulWeights
from .partition_rows_across_cores import PartitionRowsAcrossCores
from .produce_into_concat import ProduceIntoConcat

__all__ = ["ApplyBatchOneRecords", "ApplyHandSchedules", "FoldBatchNorm", "FoldShuffleIntoGroupedConv",
           "FuseConcatShuffleSplit", "FuseExpandDepthwise", "FuseGroupedConvPair", "FuseStemConvPool",
           "KeepIdentityInPlace", "PackConv1x1Weights", "PackMatmulWeights", "PartitionRowsAcrossCores",
           "ProduceIntoConcat"]
