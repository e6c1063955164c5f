"""Test-session setup."""

import torch as th

# pytest -n 2 runs two workers on CI's two cores: two torch thread pools of two threads each oversubscribe the
# machine and OpenMP spin-waiting makes small backward passes ~20x slower. One thread per worker avoids it.
th.set_num_threads(1)
