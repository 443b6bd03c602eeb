"""The EX-FIQA paper protocol: 8 benchmarks x 4 FR models (files not shipped).

    exfiqa evaluate --config paper checkpoint=weights/vit_fiqa

expects the converted ViT-FIQA checkpoint (`exfiqa convert model.pt
weights/vit_fiqa`), the verification .bin files under data/bins, XQLFW and
Adience in the CR-FIQA folder layout, IJB-C under data/IJBC, and each FR
model's embeddings as `data/embeddings/<dataset>_<FRModel>/<stem>.npy`. It prints
`wrote out/paper/summary.md`; the summary holds, for each dataset x FR model,
the ERC areas at FMR 1e-3 and 1e-4 and the EDC partial areas at 0.2 and 0.3 of
every exit, of the mean and depth-weighted fusions of all exits, and of the best
subsets of the sweep. A missing file is reported before any work starts.
"""


def get_config() -> dict:
  bins = "data/bins"
  crfiqa = dict(builder="cr_fiqa_folder", channel_order="bgr")  # JPEGs written BGR
  fr_models = ["ArcFace", "ElasticFace", "MagFace", "CurricularFace"]
  return dict(
    checkpoint="weights/vit_fiqa",
    out_dir="out/paper",
    data_dir="out/tfds",
    datasets=dict(
      lfw=dict(builder="verification_bin", files=bins),
      agedb_30=dict(builder="verification_bin", files=bins),
      cfp_fp=dict(builder="verification_bin", files=bins),
      calfw=dict(builder="verification_bin", files=bins),
      cplfw=dict(builder="verification_bin", files=bins),
      xqlfw=dict(crfiqa, files="data/quality_data/XQLFW"),
      adience=dict(crfiqa, files="data/quality_data/adience"),
      ijbc=dict(builder="ijbc_1to1", files="data/IJBC"),
    ),
    fr_models=fr_models,
    embeddings={fr: "data/embeddings" for fr in fr_models},
    scoring=dict(batch_size=64, dtype="float32"),
    metrics=dict(fmrs=(1e-3, 1e-4), edc_fmr=1e-3, edc_limits=(0.2, 0.3)),
    sweep=dict(
      rules=("mean", "weighted", "median", "min", "max"),
      norms=("none", "zscore"),
      top_k=3,
      memory_mb=2048,
    ),
    # exits to plot besides the last one, the depth-weighted fusion and the best subset
    report=dict(exits=()),
    weights=dict(powers=(0.0, 0.5, 1.0, 2.0, 4.0), simplex=256, learn_steps=200, seed=0),
  )
