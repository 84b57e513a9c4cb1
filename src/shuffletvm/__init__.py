"""shuffletvm: ShuffleNet V1/V2 compiled with TVM (Relax) into self-contained modules.

The package root stays light: `shuffletvm.runtime` must import in a process with only the TVM runtime (no
torch, no compiler), so the heavy parts are imported by the functions that need them.
"""

__version__ = "0.1.0"
