"""The released ViT-FIQA evaluation model ("ViT-S"): 112x112, patch 9, width 512, depth 12.

    exfiqa info --config vit_s

prints 76,025,344 parameters (76.03 M, half of them in `feature/0`), 0.076
GFLOPs for the embedding head, and a table of exits 1..12 with the GFLOPs per
image of quality-only scoring: 0.991 at exit 1 rising by 0.955 a block to
11.500 at exit 12.
"""


def get_config() -> dict:
  return dict(image_size=112, patch_size=9, width=512, depth=12, num_heads=8, mlp_dim=2048)
