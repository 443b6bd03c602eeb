"""Adaptive early exit: policies that stop each image where its quality is settled,
their calibration on exit scores and their evaluation (docs/protocol.md §10)."""
