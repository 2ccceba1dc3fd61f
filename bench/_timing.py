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


def alternate_medians(first, second, repeat):
    """Median times of `first` and `second` called alternately `repeat` times each (after one
    warm-up call of each): both see the same drift of a shared machine's speed."""
    first()
    second()
    t1, t2 = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        first()
        t1.append(time.perf_counter() - t)
        t = time.perf_counter()
        second()
        t2.append(time.perf_counter() - t)
    return float(np.median(t1)), float(np.median(t2))
