"""`python -m exfiqa_jax.convert SRC DST [...]`: the same as `exfiqa convert SRC DST [...]`."""

import sys

from exfiqa_jax.cli import main

sys.exit(main(["convert", *sys.argv[1:]]))
