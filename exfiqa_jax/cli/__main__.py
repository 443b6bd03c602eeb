"""`python -m exfiqa_jax.cli ...`: the same as `exfiqa ...`."""

import sys

from exfiqa_jax.cli import main

sys.exit(main())
