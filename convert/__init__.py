"""Exact import of ViT-FIQA PyTorch checkpoints (SPEC section 5) into exfiqa-jax, and back.

    from convert import from_torch, to_torch_state_dict, convert_file
    config, params, batch_stats = from_torch(state_dict, num_heads=8)

`python -m convert SRC DST` is `exfiqa convert SRC DST`.
"""
from convert.core import from_torch
from convert.export import to_torch_state_dict
from convert.files import convert_file, export_file
from convert.infer import default_image_size, infer_config
from convert.safe_load import load_torch
from convert.wrappers import unwrap

__all__ = ["from_torch", "to_torch_state_dict", "convert_file", "export_file", "load_torch",
           "unwrap", "infer_config", "default_image_size"]
