"""Evaluation jobs: options and config, benchmark inputs, comparison scores, analysis, the
run (which computes and returns; `exfiqa_jax.report` writes)."""
