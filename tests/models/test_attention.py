"""The quality token's attention per block against the PyTorch reference's own softmax."""

import jax.numpy as jnp
import numpy as np

from exfiqa_jax import ViTConfig
from exfiqa_jax.models.attention_maps import quality_token_attention
from exfiqa_jax.models.inference import apply
from tests.helpers import requires_torch, torch_to_flax


@requires_torch
def test_matches_reference_attention_rows():
  import torch

  from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference, randomize_

  cfg = ViTConfig(image_size=40, patch_size=9, width=48, depth=3, num_heads=6, mlp_dim=80)
  ref = randomize_(ViTFIQAReference(**cfg.to_dict()), seed=5)
  x = np.random.default_rng(0).uniform(-1, 1, (2, 40, 40, 3)).astype(np.float32)
  rows = []
  with torch.no_grad():  # recompute each block's softmax by hand from its qkv
    h = ref.patch_embed(torch.from_numpy(x).permute(0, 3, 1, 2))
    h = torch.cat([ref.qs_token.expand(2, -1, -1), h], 1) + ref.pos_embed
    for blk in ref.blocks:
      qkv = blk.attn.qkv(blk.norm1(h)).reshape(2, 17, 3, 6, 8).permute(2, 0, 3, 1, 4)
      attn = (qkv[0] @ qkv[1].transpose(-2, -1) * 8**-0.5).softmax(-1)
      rows.append(attn[:, :, 0, 1:].numpy())
      h = blk(h)
  got = quality_token_attention(*torch_to_flax(ref.state_dict(), cfg), jnp.asarray(x))
  assert got.shape == (2, 3, 6, 16)
  np.testing.assert_allclose(got, np.stack(rows, 1), atol=1e-6)


def test_attention_command_writes_maps(tmp_path):
  from PIL import Image

  from exfiqa_jax import create, preprocess, save, split
  from exfiqa_jax.cli import main

  cfg = ViTConfig(image_size=40, patch_size=9, width=48, depth=3, num_heads=6, mlp_dim=80)
  graphdef, params, batch_stats = split(create(cfg, seed=2))
  save(str(tmp_path / "ckpt"), cfg, params, batch_stats)
  imgs = np.random.default_rng(1).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
  (tmp_path / "faces").mkdir()
  for i, im in enumerate(imgs):
    Image.fromarray(im).save(tmp_path / "faces" / f"f{i}.png")
  assert (
    main(
      [
        "attention",
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--images",
        str(tmp_path / "faces"),
        "--out",
        str(tmp_path / "att"),
      ]
    )
    == 0
  )
  # The marker (.exfiqa-output.json) shows that exfiqa wrote the folder (issue 14).
  assert sorted(p.name for p in (tmp_path / "att").iterdir() if p.name[0] != ".") == [
    "attention.npz",
    "f0.png",
    "f0.svg",
    "f1.png",
    "f1.svg",
  ]
  for name in ("f0.png", "f1.png"):
    assert (tmp_path / "att" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(tmp_path / "att" / name) as im:
      im.verify()
  saved = np.load(tmp_path / "att" / "attention.npz")
  want = quality_token_attention(graphdef, params, batch_stats, preprocess(imgs, 40))
  np.testing.assert_allclose(saved["attention"], want, atol=1e-6)
  assert list(saved["names"]) == ["f0.png", "f1.png"]
  # the exit scores in the block titles are the model's own exits
  got = apply(graphdef, params, batch_stats, preprocess(imgs, 40)).exits
  np.testing.assert_allclose(saved["exits"], got, atol=1e-5)


def test_attention_command_batches_caps_and_says_so(tmp_path, capsys):
  """--batch-size (the last batch padded), --max-images (said in the first line),
  --dtype bfloat16 and --quiet (issue 26): maps equal the one-pass ones."""
  from PIL import Image

  from exfiqa_jax import create, preprocess, save, split
  from exfiqa_jax.cli import main

  cfg = ViTConfig(image_size=40, patch_size=9, width=48, depth=3, num_heads=6, mlp_dim=80)
  graphdef, params, batch_stats = split(create(cfg, seed=2))
  save(str(tmp_path / "ckpt"), cfg, params, batch_stats)
  imgs = np.random.default_rng(1).integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
  (tmp_path / "faces").mkdir()
  for i, im in enumerate(imgs):
    Image.fromarray(im).save(tmp_path / "faces" / f"f{i}.png")
  want = quality_token_attention(graphdef, params, batch_stats, preprocess(imgs[:3], 40))
  base = ["attention", "--checkpoint", str(tmp_path / "ckpt"), "--images"]
  base += [str(tmp_path / "faces"), "--max-images", "3", "--batch-size", "2", "--quiet"]
  assert main([*base, "--out", str(tmp_path / "att")]) == 0
  out = capsys.readouterr()
  assert out.out.splitlines()[0] == (
    "attention: the quality token's attention over the patches at each of the 3 blocks, "
    f"for 3 images (the first 3 of 5: --max-images 3), into {tmp_path / 'att'}/"
  )
  assert "attention:" not in out.err  # --quiet: no progress bar
  saved = np.load(tmp_path / "att" / "attention.npz")
  assert list(saved["names"]) == ["f0.png", "f1.png", "f2.png"]
  np.testing.assert_allclose(saved["attention"], want, atol=1e-6)
  assert main([*base, "--dtype", "bfloat16", "--out", str(tmp_path / "bf16")]) == 0
  bf16 = np.load(tmp_path / "bf16" / "attention.npz")["attention"]
  err = np.abs(bf16 - np.asarray(want)).max()
  assert 0 < err < 0.05  # bfloat16 matmuls: close, not equal
