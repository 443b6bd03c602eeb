"""Exact import of model checkpoints into exfiqa-jax, and back: ViT-FIQA (docs/protocol.md
§9) and the face-recognition backbones (ArcFace, ElasticFace, MagFace, CurricularFace),
each one record of `FAMILIES`.

    from exfiqa_jax.convert import from_torch, to_torch, convert_file
    config, params, batch_stats = from_torch(state_dict, num_heads=8)
    config, params, batch_stats = from_torch(load_torch(path), family="magface")

`python -m exfiqa_jax.convert SRC DST` is `exfiqa convert SRC DST`.
"""

from exfiqa_jax.convert.core import from_torch, infer_config, to_torch, unwrap
from exfiqa_jax.convert.families import FAMILIES, Family
from exfiqa_jax.convert.files import convert_file, export_file
from exfiqa_jax.convert.infer import default_image_size
from exfiqa_jax.convert.safe_load import load_torch

__all__ = [
  "FAMILIES",
  "Family",
  "from_torch",
  "to_torch",
  "convert_file",
  "export_file",
  "load_torch",
  "unwrap",
  "infer_config",
  "default_image_size",
]
