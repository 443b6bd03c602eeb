"""Sub-commands of the `exfiqa` command line (see `exfiqa_jax.cli`)."""
