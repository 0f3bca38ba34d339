"""Test-session settings."""

import torch

# The tests train tiny networks, for which one thread is fastest: more threads only add
# synchronisation, and on a busy 2-core machine they wait on each other for most of the time.
torch.set_num_threads(1)
