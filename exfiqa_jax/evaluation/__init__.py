"""Evaluation jobs: config, benchmark inputs, comparison scores, analysis, the run."""
