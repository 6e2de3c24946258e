"""Benchmarks (not tests): run them by hand, read the numbers, compare runs on one machine."""
