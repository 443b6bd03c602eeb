"""exfiqa-jax: early-exit face image quality assessment (EX-FIQA) in JAX/Flax."""

from exfiqa_jax.data.preprocess import normalize, preprocess
from exfiqa_jax.models.checkpoint import load, save
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.inference import abstract_variables, apply, create, split
from exfiqa_jax.models.vit import Outputs, ViTFIQA

__all__ = [
  "ViTConfig",
  "ViTFIQA",
  "Outputs",
  "create",
  "split",
  "apply",
  "abstract_variables",
  "normalize",
  "preprocess",
  "load",
  "save",
]
