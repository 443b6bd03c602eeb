"""exfiqa_jax.save / load: exact, atomic, refusing to overwrite, clear errors."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from exfiqa_jax import ViTConfig, abstract_variables, apply, load, save
from exfiqa_jax.models.fr_config import FRConfig

CFG = ViTConfig(image_size=24, patch_size=8, width=16, depth=2, num_heads=2, mlp_dim=24)


def _random(seed: int):
  """(graphdef, params, batch_stats) with every value drawn from U(0.5, 1.5)."""
  graphdef, params, batch_stats = abstract_variables(CFG)
  rng = np.random.default_rng(seed)

  def fill(s):
    return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype)

  return graphdef, jax.tree.map(fill, params), jax.tree.map(fill, batch_stats)


def _leaves(state):
  return jax.tree.leaves(jax.tree.map(np.asarray, state))


def test_round_trip_exact(tmp_path):
  graphdef, params, batch_stats = _random(1)
  save(str(tmp_path / "ckpt"), CFG, params, batch_stats)
  got = load(str(tmp_path / "ckpt"))
  assert got.config == CFG
  for name, want, have in [("params", params, got.params), ("stats", batch_stats, got.batch_stats)]:
    assert jax.tree.structure(want) == jax.tree.structure(have), name
    for a, b in zip(_leaves(want), _leaves(have), strict=True):
      assert a.dtype == b.dtype and np.array_equal(a, b), name
  assert got.params["feature"][0]["kernel"][...].shape == (9 * 16, 16)  # int keys come back
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 24, 24, 3)), jnp.float32)
  np.testing.assert_array_equal(
    apply(got.graphdef, got.params, got.batch_stats, x).exits,
    apply(graphdef, params, batch_stats, x).exits,
  )


def test_existing_path_needs_force(tmp_path):
  _, p1, b1 = _random(1)
  _, p2, b2 = _random(2)
  path = str(tmp_path / "ckpt")
  save(path, CFG, p1, b1)
  with pytest.raises(FileExistsError, match=r"ckpt exists; pass --force"):
    save(path, CFG, p2, b2)
  assert np.array_equal(load(path).params["qs_token"][...], p1["qs_token"][...])
  save(path, CFG, p2, b2, force=True)
  assert np.array_equal(load(path).params["qs_token"][...], p2["qs_token"][...])
  assert os.listdir(tmp_path) == ["ckpt"]


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
  _, params, batch_stats = _random(0)

  def broken(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(ocp.Checkpointer, "save", broken)
  with pytest.raises(OSError, match="disk full"):
    save(str(tmp_path / "ckpt"), CFG, params, batch_stats)
  assert os.listdir(tmp_path) == []


def test_load_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"nope: no such checkpoint folder"):
    load(str(tmp_path / "nope"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match=r"empty: not an exfiqa checkpoint"):
    load(str(tmp_path / "empty"))


def test_load_replicates_over_all_devices(tmp_path):
  _, params, batch_stats = _random(3)
  save(str(tmp_path / "ckpt"), CFG, params, batch_stats)
  code = f"""
import jax, numpy as np
from exfiqa_jax import apply, load
got = load({str(tmp_path / "ckpt")!r})
leaf = got.params["pos_embed"][...]
assert len(leaf.sharding.device_set) == 2 and leaf.sharding.is_fully_replicated
x = np.random.default_rng(0).uniform(-1, 1, (4, 24, 24, 3)).astype(np.float32)
print(np.asarray(apply(got.graphdef, got.params, got.batch_stats, x).quality).tolist())
"""
  env = {
    **os.environ,
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    "JAX_PLATFORMS": "cpu",
  }
  run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  graphdef = abstract_variables(CFG)[0]
  x = np.random.default_rng(0).uniform(-1, 1, (4, 24, 24, 3)).astype(np.float32)
  np.testing.assert_allclose(
    json.loads(run.stdout.strip().splitlines()[-1]),
    apply(graphdef, params, batch_stats, x).quality,
    rtol=1e-5,
    atol=1e-6,
  )


FR_CFG = FRConfig.for_family(
  "magface", layers=(1, 1), widths=(4, 8), stem_width=4, embedding_size=8, image_size=16
)


@pytest.mark.parametrize("config", [CFG, FR_CFG], ids=["vit_fiqa", "face_recognition"])
def test_kind_is_stored_and_checkpoints_without_one_still_load(tmp_path, config):
  """The config JSON holds the model's kind; one written before kinds were stored (the
  same JSON without "kind") loads to the same config and variables."""
  graphdef, params, batch_stats = abstract_variables(config)
  rng = np.random.default_rng(3)
  params, batch_stats = jax.tree.map(
    lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype), (params, batch_stats)
  )
  path = tmp_path / "ckpt"
  save(str(path), config, params, batch_stats)
  meta = path / "config" / "metadata"
  stored = json.loads(meta.read_text())
  assert stored == {"kind": config.kind, **config.to_dict()}
  new = load(str(path))
  meta.write_text(json.dumps(config.to_dict()))  # as the code before kinds wrote it
  old = load(str(path))
  assert new.config == old.config == config and type(old.config) is type(config)
  for a, b in zip(
    _leaves((new.params, new.batch_stats)), _leaves((params, batch_stats)), strict=True
  ):
    assert np.array_equal(a, b)
  for a, b in zip(
    _leaves((old.params, old.batch_stats)), _leaves((params, batch_stats)), strict=True
  ):
    assert np.array_equal(a, b)
  meta.write_text(json.dumps({"kind": "hologram", **config.to_dict()}))
  with pytest.raises(KeyError, match=r"unknown model kind 'hologram'; one of vit_fiqa, face_"):
    load(str(path))
