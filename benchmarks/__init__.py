"""Benchmarks: each compares our code with a peer or baseline in the same run; `python -m
benchmarks.<name>`."""
