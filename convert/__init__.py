"""Exact import of ViT-FIQA PyTorch checkpoints (docs/protocol.md §9) into exfiqa-jax, and back;
with a family, of the face-recognition backbones (ArcFace, ElasticFace, MagFace, CurricularFace).

    from exfiqa_jax.convert import from_torch, to_torch_state_dict, convert_file
    config, params, batch_stats = from_torch(state_dict, num_heads=8)
    config, params, batch_stats = fr_from_torch(torch.load(path, weights_only=True), "magface")

`python -m exfiqa_jax.convert SRC DST` is `exfiqa convert SRC DST`.
"""

from exfiqa_jax.convert.core import from_torch
from exfiqa_jax.convert.export import to_torch_state_dict
from exfiqa_jax.convert.files import convert_file, export_file
from exfiqa_jax.convert.fr_core import fr_from_torch, fr_to_torch
from exfiqa_jax.convert.infer import default_image_size, infer_config
from exfiqa_jax.convert.safe_load import load_torch
from exfiqa_jax.convert.wrappers import unwrap

__all__ = [
  "from_torch",
  "to_torch_state_dict",
  "convert_file",
  "export_file",
  "fr_from_torch",
  "fr_to_torch",
  "load_torch",
  "unwrap",
  "infer_config",
  "default_image_size",
]
