"""exfiqa-jax: early-exit face image quality assessment (EX-FIQA) in JAX/Flax."""
from exfiqa_jax.checkpoint import load, save
from exfiqa_jax.config import ViTConfig
from exfiqa_jax.inference import abstract_variables, apply, create, split
from exfiqa_jax.model import Outputs, ViTFIQA
from exfiqa_jax.preprocess import normalize, preprocess

__all__ = ["ViTConfig", "ViTFIQA", "Outputs", "create", "split", "apply",
           "abstract_variables", "normalize", "preprocess", "load", "save"]
