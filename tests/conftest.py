"""Test-wide settings.

The suite runs on a 2-core CI machine: torch gets an explicit thread count (OMP_NUM_THREADS
if the caller set one, else 2) so that parallel native work never oversubscribes the cores.
"""

import os

import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
torch.use_deterministic_algorithms(False)
