"""Run the upconv benchmark suite: ``python benchmarks/run.py [upconv bench options]``.

A thin wrapper around ``upconv bench`` (see ``upconv bench --help``); results go to
``benchmarks/results/`` by default. Unless the environment says otherwise it runs with
``OMP_WAIT_POLICY=PASSIVE``, which must be set before PyTorch loads its OpenMP runtime:
PyTorch's default spin-waiting workers otherwise hold the cores for milliseconds after every
PyTorch op and slow whatever runs next on its own threads (see docs/performance.md).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from upconv.cli.bench import bench  # after the environment is set

if __name__ == "__main__":
    bench()
