"""`exfiqa info`: parameter count and GFLOPs per image at every exit of a config."""

from __future__ import annotations

import argparse

NAME = "info"
HELP = "print the parameter count and GFLOPs per image of every exit of a model config"


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument(
    "--config",
    default="vit_s",
    help="a shipped model config (vit_s, vit_s_depth24) or a .py path (default: %(default)s)",
  )


def run(args: argparse.Namespace) -> int:
  import jax
  import numpy as np
  from flax import nnx

  from exfiqa_jax import abstract_variables
  from exfiqa_jax.configs import load_config_file
  from exfiqa_jax.models.config import ViTConfig
  from exfiqa_jax.models.flops import embedding_head_flops, exit_gflops

  cfg = ViTConfig.from_dict(load_config_file(args.config))
  _, params, _ = abstract_variables(cfg)
  tree = nnx.to_pure_dict(params)
  total = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(tree))
  feature0 = int(np.prod(tree["feature"][0]["kernel"].shape))
  print(f"config {args.config}: {cfg.to_dict()}")
  print(f"parameters: {total:,} ({total / 1e6:.2f} M; feature/0 holds {feature0 / total:.0%})")
  print(f"embedding head: {embedding_head_flops(cfg) / 1e9:.3f} GFLOPs per image")
  print("| exit | blocks run | GFLOPs/image (quality only) | fraction of full |")
  print("| ---: | ---: | ---: | ---: |")
  g = exit_gflops(cfg)
  for k, v in enumerate(g, 1):
    print(f"| {k} | {k} | {v:.3f} | {v / g[-1]:.3f} |")
  return 0
