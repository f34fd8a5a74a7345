"""The engine: statistics pytrees, step-size schedules, the statistics loop."""

from .blocks import Blocks, block_rows, block_sum, choose_block_size, make_blocks, to_block_rows
from .loop import LoopResult, LoopState, final, init, run, run_chunk, step
from .progress import FitProgress
from .schedules import BurnInThenDecay, Constant, PowerDecay
from .stats import stats_add, stats_interpolate, stats_scale, stats_zeros_like

__all__ = [
    "Blocks", "BurnInThenDecay", "Constant", "FitProgress", "LoopResult", "LoopState", "PowerDecay",
    "block_rows", "block_sum", "choose_block_size", "final", "init", "make_blocks", "run",
    "run_chunk", "to_block_rows", "stats_add", "stats_interpolate", "stats_scale", "stats_zeros_like", "step",
]
