"""Run the upconv benchmark suite: ``python benchmarks/run.py [upconv bench options]``.

A thin wrapper around ``upconv bench`` (see ``upconv bench --help``); results go to
``benchmarks/results/`` by default. It runs in the environment as it is: the figures are
those of a default process (no OpenMP variables are needed).
"""

from upconv.cli.bench import bench

if __name__ == "__main__":
    bench()
