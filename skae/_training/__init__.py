"""The training engine: where rows come from, the optimizer step, the loop, and data parallelism.

``_data``         rows in memory or streamed from out-of-core arrays; chunked inference
``_steps``        the optimizer step (autograd, CUDA graph) and the learning-rate schedule
``_backprop``     the step with a hand-written backward pass, for the CPU
``_loop``         epochs, the stopping rules, and what a call to fit changes
``_distributed``  one model trained by every process of a torch.distributed group
"""

from ._backprop import BackpropStep
from ._data import (
    INFERENCE_CHUNK_ROWS,
    InMemoryRows,
    StreamedRows,
    is_out_of_core,
    iter_blocks,
    iter_chunks,
    map_in_chunks,
    training_rows,
)
from ._distributed import process_group
from ._loop import Outcome, TrainingState, train, unconverged
from ._steps import CudaGraphStep, TrainingStep, learning_rates, load_optimizer_state

__all__ = [
    "INFERENCE_CHUNK_ROWS",
    "BackpropStep",
    "CudaGraphStep",
    "InMemoryRows",
    "Outcome",
    "StreamedRows",
    "TrainingState",
    "TrainingStep",
    "is_out_of_core",
    "iter_blocks",
    "iter_chunks",
    "learning_rates",
    "load_optimizer_state",
    "map_in_chunks",
    "process_group",
    "train",
    "training_rows",
    "unconverged",
]
