"""A small real job: LFW alone, compared with the model's own embedding head.

    exfiqa evaluate --config lfw checkpoint=weights/vit_fiqa

needs data/bins/lfw.bin and a converted checkpoint; prints
`wrote out/lfw/summary.md` with every exit, the paper's fusions and the best
subsets at ERC FMR 1e-3/1e-4 and EDC 0.2/0.3.
"""


def get_config() -> dict:
  return dict(
    checkpoint="weights/vit_fiqa",
    out_dir="out/lfw",
    data_dir="out/tfds",
    datasets=dict(lfw=dict(builder="verification_bin", files="data/bins")),
    fr_models=["self"],
    embeddings={},
    scoring=dict(batch_size=64, dtype="float32"),
    metrics=dict(fmrs=(1e-3, 1e-4), edc_fmr=1e-3, edc_limits=(0.2, 0.3)),
    sweep=dict(
      rules=("mean", "weighted", "median", "min", "max"),
      norms=("none", "zscore"),
      top_k=3,
      memory_mb=1024,
    ),
    weights=dict(powers=(0.0, 0.5, 1.0, 2.0, 4.0), simplex=256, learn_steps=200, seed=0),
  )
