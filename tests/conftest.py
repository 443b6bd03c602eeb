import os

# Exactness tests compare float32 at full precision.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
