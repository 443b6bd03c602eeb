"""A small real job: LFW alone, compared with the model's own embedding head.

    exfiqa evaluate --config lfw checkpoint=weights/vit_fiqa

needs data/bins/lfw.bin and a converted checkpoint; prints
`wrote out/lfw/summary.md` with every exit, the paper's fusions and the best
subsets at ERC FMR 1e-3/1e-4 and EDC 0.2/0.3.
"""

from exfiqa_jax.configs import paper


def get_config() -> dict:
  cfg = paper.get_config()  # the paper's metric, sweep and weight options
  cfg.update(
    out_dir="out/lfw",
    datasets={"lfw": cfg["datasets"]["lfw"]},
    fr_models=["self"],
    embeddings={},
    quality_methods={},  # the paper's assessors need its FR models and released weights
  )
  cfg["sweep"]["memory_mb"] = 1024
  return cfg
