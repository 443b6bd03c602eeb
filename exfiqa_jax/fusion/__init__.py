"""Fusion of exit scores over exit subsets, the compiled engine, sweeps and weights."""
