"""`python -m exfiqa_jax.cli ...`: the same as `exfiqa ...`."""

from exfiqa_jax.cli import entry

entry()
