"""The quality token's attention per block against the PyTorch reference's own softmax."""
import jax.numpy as jnp
import numpy as np
import torch

from exfiqa_jax import ViTConfig
from exfiqa_jax.attention import quality_token_attention
from tests.helpers import torch_to_flax
from tests.torch_reference import ViTFIQAReference, randomize_


def test_matches_reference_attention_rows():
  cfg = ViTConfig(image_size=40, patch_size=9, width=48, depth=3, num_heads=6, mlp_dim=80)
  ref = randomize_(ViTFIQAReference(**cfg.to_dict()), seed=5)
  x = np.random.default_rng(0).uniform(-1, 1, (2, 40, 40, 3)).astype(np.float32)
  rows = []
  with torch.no_grad():  # recompute each block's softmax by hand from its qkv
    h = ref.patch_embed(torch.from_numpy(x).permute(0, 3, 1, 2))
    h = torch.cat([ref.qs_token.expand(2, -1, -1), h], 1) + ref.pos_embed
    for blk in ref.blocks:
      qkv = blk.attn.qkv(blk.norm1(h)).reshape(2, 17, 3, 6, 8).permute(2, 0, 3, 1, 4)
      attn = (qkv[0] @ qkv[1].transpose(-2, -1) * 8 ** -0.5).softmax(-1)
      rows.append(attn[:, :, 0, 1:].numpy())
      h = blk(h)
  got = quality_token_attention(*torch_to_flax(ref.state_dict(), cfg), jnp.asarray(x))
  assert got.shape == (2, 3, 6, 16)
  np.testing.assert_allclose(got, np.stack(rows, 1), atol=1e-6)
