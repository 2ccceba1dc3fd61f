"""Timing shared by the bench scripts (run as `python bench/<script>.py`, which puts this folder
on the import path)."""

import time

import numpy as np


def median_time(fn, repeat, pause=0.0):
    """The median time of `repeat` calls of fn, after `pause` seconds (to let another library's
    spinning threads park) and one warm-up call."""
    time.sleep(pause)
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))
