"""The depth-24 ViT-FIQA variant of the same code base: as `vit_s` with 24 blocks.

    exfiqa info --config vit_s_depth24

prints 113,835,520 parameters (113.84 M) and the GFLOPs per image of exits
1..24: 0.991 at exit 1 to 22.964 at exit 24.
"""


def get_config() -> dict:
  return dict(image_size=112, patch_size=9, width=512, depth=24, num_heads=8, mlp_dim=2048)
