import os

# Exactness tests compare float32 at full precision.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
# In-process CLI calls keep no compilation cache (tests/test_evaluate.py checks it in a
# fresh process).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", "")
