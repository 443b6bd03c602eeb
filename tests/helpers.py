"""Test helpers: move a reference PyTorch state_dict into the Flax model by hand."""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from exfiqa_jax import ViTConfig, abstract_variables


def _linear(sd, key):
  out = {"kernel": sd[f"{key}.weight"].T}
  if f"{key}.bias" in sd:
    out["bias"] = sd[f"{key}.bias"]
  return out


def _ln(sd, key):
  return {"scale": sd[f"{key}.weight"], "bias": sd[f"{key}.bias"]}


def torch_to_flax(state_dict, config: ViTConfig):
  """(graphdef, params, batch_stats) from a reference state_dict (float32)."""
  sd = {k: v.detach().float().numpy() for k, v in state_dict.items()}
  blocks = [{"norm1": _ln(sd, f"blocks.{i}.norm1"), "norm2": _ln(sd, f"blocks.{i}.norm2"),
             "attn": {"qkv": _linear(sd, f"blocks.{i}.attn.qkv"),
                      "proj": _linear(sd, f"blocks.{i}.attn.proj")},
             "mlp": {"fc1": _linear(sd, f"blocks.{i}.mlp.fc1"),
                     "fc2": _linear(sd, f"blocks.{i}.mlp.fc2")}}
            for i in range(config.depth)]
  stack = lambda *xs: np.stack(xs)
  params = {
      "patch_embed": {"proj": {"kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
                               "bias": sd["patch_embed.proj.bias"]}},
      "qs_token": sd["qs_token"], "pos_embed": sd["pos_embed"],
      "blocks": jax.tree.map(stack, *blocks), "norm": _ln(sd, "norm"),
      "feature": {0: _linear(sd, "feature.0"), 1: _ln(sd, "feature.1"),
                  2: _linear(sd, "feature.2"), 3: _ln(sd, "feature.3")},
      "head_qs": {0: _ln(sd, "head_qs.0"), 1: _linear(sd, "head_qs.1")},
  }
  stats = lambda key: {"mean": sd[f"{key}.running_mean"], "var": sd[f"{key}.running_var"]}
  batch_stats = {"feature": {1: stats("feature.1"), 3: stats("feature.3")},
                 "head_qs": {0: stats("head_qs.0")}}
  graphdef, p, b = abstract_variables(config)
  nnx.replace_by_pure_dict(p, params)
  nnx.replace_by_pure_dict(b, batch_stats)
  return graphdef, p, b
