"""The EX-FIQA paper protocol: 8 benchmarks x 4 FR models, from raw files and five checkpoints.

    exfiqa convert vit_fiqa.pt weights/vit_fiqa --num-heads 8
    exfiqa convert ms1mv2_arcface_r100_fp16/backbone.pth weights/arcface --family arcface
    exfiqa convert 295672backbone.pth weights/elasticface --family elasticface
    exfiqa convert magface_epoch_00025.pth weights/magface --family magface
    exfiqa convert CurricularFace_Backbone.pth weights/curricularface --family curricularface
    exfiqa convert 181952backbone.pth weights/crfiqa_l --family cr-fiqa
    exfiqa convert 32572backbone.pth weights/crfiqa_s --family cr-fiqa
    exfiqa evaluate --config paper

The released files: ViT-FIQA's model, insightface arcface_torch's ResNet100
(MS1MV2) `backbone.pth`, ElasticFace-Arc's `295672backbone.pth`, MagFace's
iResNet100 `magface_epoch_00025.pth` and CurricularFace's IR-101
`CurricularFace_Backbone.pth`. Beside them: the verification .bin files under
data/bins, XQLFW and Adience as CR-FIQA's extraction scripts write them
(data/quality_data/<name>/, paths relative to data/, JPEGs with swapped
channels: channel_order "bgr"), IJB-C as released under data/IJBC (loose_crop/
and meta/; aligned here as CR-FIQA's extract_IJB.py does, needs the `ijbc`
extra). The four FR networks run in the same pass over each dataset as
ViT-FIQA. The reproduction rule (README "Reproducing the paper's numbers",
docs/protocol.md §8): every image is true RGB in memory; ViT-FIQA is fed it as
its own evaluation code feeds it, and every FR network as CR-FIQA's
extract_emb.py did: true RGB for all four, MagFace included (its release's own
order is BGR; an entry's channel_order overrides, None gives the release's
order). Each FR embedding is CR-FIQA's: the L2-normalised embeddings of the
image and of its mirror side by side (flip "concat"). IJB-C templates take the
minimum quality of their images (metrics.template_quality, as CR-FIQA's
ijb_qs_pair_file.py). It prints
`wrote out/paper/summary.md`; the summary holds, for each dataset x FR model,
the ERC areas at FMR 1e-3 and 1e-4 and the EDC partial areas at 0.2 and 0.3 of
every exit, of the mean and depth-weighted fusions of all exits, and of the best
subsets of the sweep. A missing file is reported before any work starts.
Precomputed embeddings work too: an entry {"embeddings": "data/embeddings"}
reads `data/embeddings/<dataset>_<FRModel>/<stem>.npy`.

The field's assessors run in the same pass and get the same rows, curves and
cross-benchmark rows (`quality_methods`): CR-FIQA(L) (iresnet100, `181952backbone.pth`)
and CR-FIQA(S) (iresnet50, `32572backbone.pth`) from fdbtrs/CR-FIQA's released models,
MagFace's embedding norm, SER-FIQ (100 passes) on ArcFace, GraFIQs on the ArcFace
backbone. Their networks are fed as the FR networks are (true RGB): CR-FIQA's
getQualityScore.py and GraFIQs' extract_grafiqs.py feed cv2.imread's array of the
extracted files unconverted, as extract_emb.py does.
"""


def get_config() -> dict:
  bins = "data/bins"
  # The extractors' JPEGs hold swapped channels; read as bgr they are true RGB in memory.
  crfiqa = dict(builder="cr_fiqa_folder", channel_order="bgr")
  # CR-FIQA's extract_emb.py fed cv2.imread's array of those files unconverted: true RGB.
  fr = dict(flip="concat", channel_order="rgb")
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
    fr_models=dict(
      ArcFace=dict(fr, checkpoint="weights/arcface"),
      ElasticFace=dict(fr, checkpoint="weights/elasticface"),
      MagFace=dict(fr, checkpoint="weights/magface"),
      CurricularFace=dict(fr, checkpoint="weights/curricularface"),
    ),
    embeddings={},
    scoring=dict(batch_size=64, dtype="float32"),
    metrics=dict(fmrs=(1e-3, 1e-4), edc_fmr=1e-3, edc_limits=(0.2, 0.3), template_quality="min"),
    sweep=dict(
      rules=("mean", "weighted", "median", "min", "max"),
      norms=("none", "zscore"),
      top_k=3,
      memory_mb=2048,
    ),
    quality_methods={
      "CR-FIQA(L)": dict(checkpoint="weights/crfiqa_l", channel_order="rgb"),
      "CR-FIQA(S)": dict(checkpoint="weights/crfiqa_s", channel_order="rgb"),
      "MagFace": dict(fr_model="MagFace"),
      "SER-FIQ": dict(fr_model="ArcFace", passes=100, p=0.5, seed=0),
      "GraFIQs": dict(checkpoint="weights/arcface", variant="image", channel_order="rgb"),
    },
    # exits to plot besides the last one, the depth-weighted fusion and the best subset
    report=dict(exits=()),
    weights=dict(powers=(0.0, 0.5, 1.0, 2.0, 4.0), simplex=256, learn_steps=200, seed=0),
  )
