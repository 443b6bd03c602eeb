"""The demo job: a generated benchmark and untrained weights, no files or network needed.

    exfiqa demo

generates `out/demo/files/demo.bin` (300 pairs of synthetic 112x112 images) and a
checkpoint in the released PyTorch layout (a small depth-12 model with random
weights), converts it, scores, evaluates and sweeps, and prints the path of
`out/demo/summary.md` (tables of every exit, the mean and depth-weighted fusions,
the best subsets, the Pareto front, with plots) and `out/demo/sweep/`.
`exfiqa evaluate --config demo` re-runs the evaluation part once the
demo has written its files.
"""


def get_config() -> dict:
  out = "out/demo"
  return dict(
    # The generated model: the released depth and patch grid, small enough for any CPU.
    model=dict(image_size=112, patch_size=9, width=64, depth=12, num_heads=4, mlp_dim=128),
    checkpoint=f"{out}/checkpoint",
    out_dir=out,
    data_dir=f"{out}/tfds",
    datasets=dict(demo=dict(builder="verification_bin", files=f"{out}/files")),
    fr_models=["self"],
    embeddings={},
    scoring=dict(batch_size=64, dtype="float32"),
    metrics=dict(fmrs=(1e-2, 1e-3), edc_fmr=1e-2, edc_limits=(0.2, 0.3)),
    sweep=dict(
      rules=("mean", "weighted", "median", "min", "max"),
      norms=("none", "zscore"),
      top_k=3,
      memory_mb=512,
    ),
    # The field's assessors, with random weights (`exfiqa demo` writes their checkpoints):
    # their rows in the cross-benchmark table show the pipeline, not the methods. SER-FIQ
    # with 8 stochastic passes (its method uses 100) to keep the demo fast.
    quality_methods={
      "CR-FIQA": dict(checkpoint=f"{out}/assessors/crfiqa"),
      "MagFace": dict(checkpoint=f"{out}/assessors/magface"),
      "SER-FIQ": dict(checkpoint=f"{out}/assessors/arcface", passes=8),
      "GraFIQs": dict(checkpoint=f"{out}/assessors/arcface", variant="block2"),
    },
    # exits to plot besides the last one, the depth-weighted fusion and the best subset
    report=dict(exits=(6,)),
    weights=dict(powers=(0.0, 0.5, 1.0, 2.0, 4.0), simplex=64, learn_steps=100, seed=0),
  )
