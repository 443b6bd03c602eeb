"""`exfiqa embed` takes the shared image arguments and follows the output policy."""

import numpy as np
import pytest
from PIL import Image

from exfiqa_jax.cli import main
from exfiqa_jax.models.checkpoint import load, save
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.inference import create, split
from exfiqa_jax.scoring.score import FRModel, score
from tests.score_helpers import faces

SIZES = dict(layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8, embedding_size=16)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  d = tmp_path_factory.mktemp("embed")
  config = FRConfig.for_family("arcface", **SIZES)
  _, params, stats = split(create(config, seed=3))
  save(str(d / "ckpt"), config, params, stats)
  (d / "imgs").mkdir()
  for i, x in enumerate(faces(3, 4)):
    Image.fromarray(x).save(d / "imgs" / f"f{i}.png")
  return d


def _args(d, out, *extra):
  base = ["embed", "--checkpoint", str(d / "ckpt"), "--images", str(d / "imgs")]
  return [*base, "--out", str(out), "--batch-size", "2", "--quiet", *extra]


def test_existing_out_kept_unless_force(setup, tmp_path, capsys):
  d = setup
  out = tmp_path / "e.npz"
  out.write_bytes(b"keep")
  assert main(_args(d, out)) == 2
  err = capsys.readouterr().err
  assert "e.npz exists; pass --force" in err and len(err.strip().splitlines()) == 1
  assert out.read_bytes() == b"keep"
  assert main(_args(d, out, "--force")) == 0
  z = np.load(out)
  ckpt = load(str(d / "ckpt"))
  s = score(None, _source(d), fr_models=[FRModel("m", ckpt.config, ckpt[1:])], batch_size=2)
  np.testing.assert_array_equal(z["embeddings"], s.fr["m"]["embeddings"])
  assert z["embeddings"].shape == (3, 16) and sorted(z.files) == ["embeddings", "paths"]


def _source(d):
  from exfiqa_jax.data import from_files

  return from_files(str(d / "imgs")).images


@pytest.mark.parametrize(
  "flag", [["--policy", "delta"], ["--budget", "1.0"], ["--policy-file", "p.json"]]
)
def test_policy_flags_are_unknown_arguments(setup, tmp_path, capsys, flag):
  with pytest.raises(SystemExit) as e:
    main(_args(setup, tmp_path / "e.npz", *flag))
  assert e.value.code == 2
  assert f"unrecognized arguments: {' '.join(flag)}" in capsys.readouterr().err
  assert not (tmp_path / "e.npz").exists()


def test_work_dir_resumes_finished_fr_chunks(setup, tmp_path, capsys):
  """A second `embed --work-dir` on a finished folder reuses its chunk (no "damaged",
  the chunk file is not rewritten) and gives the same embeddings, byte for byte; a
  truncated chunk is still scored again."""
  import os

  d, work = setup, tmp_path / "w"
  assert main(_args(d, tmp_path / "a.npz", "--work-dir", str(work), "--flip")) == 0
  capsys.readouterr()
  chunk = work / "chunk-000000.npz"
  before = os.stat(chunk)
  assert main(_args(d, tmp_path / "b.npz", "--work-dir", str(work), "--flip")) == 0
  err = capsys.readouterr().err
  assert "damaged" not in err, err
  after = os.stat(chunk)
  assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # reused
  a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
  assert sorted(a.files) == sorted(b.files) == ["embeddings", "embeddings_flip", "paths"]
  for k in a.files:
    assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes()
  chunk.write_bytes(chunk.read_bytes()[:100])  # a damaged chunk is still scored again
  assert main(_args(d, tmp_path / "c.npz", "--work-dir", str(work), "--flip")) == 0
  assert "chunk-000000.npz: truncated or damaged" in capsys.readouterr().err
  c = np.load(tmp_path / "c.npz")
  for k in a.files:
    assert a[k].tobytes() == c[k].tobytes()


@pytest.mark.parametrize(
  "edit, message",
  [
    ({"layers": [1, 2, 1, 2000]}, r"layers \[1, 2, 1, 2000\]: 2004 blocks, over the 128"),
    ({"embedding_size": 0}, r"embedding_size 0 is outside the bounds 1 to 8192"),
    ({"widths": [8, 8, 8, 0]}, r"widths\[3\] 0 is outside the bounds 1 to 8192"),
    ({"image_size": 0}, r"image_size 0 is outside the bounds 1 to 1024"),
    ({"bn_eps": -1}, r"bn_eps -1 is not a number in \(0, 1\)"),
    ({"kind": "vit_fiqa", "depth": 100000}, r"depth 100000 is outside the bounds 1 to 128"),
    ({"embedding_size": True}, r"embedding_size True is not an integer"),  # JSON true: not 1
    ({"layers": [1, 1, 1, True]}, r"layers\[3\] True is not an integer"),
    ({"kind": "vit_fiqa", "depth": True}, r"depth True is not an integer"),
    ({"kind": "vit_fiqa", "depth": 2.5}, r"depth 2.5 is not an integer"),  # was cut to 2
    ({"family": ["arcface"]}, r"unknown face-recognition family \['arcface'\]"),
  ],
)
def test_edited_checkpoint_config_is_bounded_before_building(setup, tmp_path, edit, message):
  """A few edited bytes of a checkpoint's config: refused in one line naming the
  checkpoint and the field, exit 2, within seconds (a real process; building the
  2004-block network took over 400 s, a zero-sized fc fell into ZeroDivisionError)."""
  import json
  import os
  import re
  import shutil
  import subprocess
  import sys

  from exfiqa_jax.models.config import ViTConfig

  shutil.copytree(setup / "ckpt", tmp_path / "ckpt")
  meta = tmp_path / "ckpt" / "config" / "metadata"
  cfg = json.loads(meta.read_text())
  if edit.get("kind") == "vit_fiqa":
    cfg = {"kind": "vit_fiqa", **ViTConfig(patch_size=28, width=16, num_heads=2).to_dict()}
  meta.write_text(json.dumps({**cfg, **edit}))
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  args = _args(setup, tmp_path / "e.npz")
  args[args.index("--checkpoint") + 1] = str(tmp_path / "ckpt")
  r = subprocess.run(
    [sys.executable, "-m", "exfiqa_jax.cli", *args],
    env={**os.environ, "PYTHONPATH": root, "JAX_COMPILATION_CACHE_DIR": ""},
    capture_output=True,
    text=True,
    timeout=90,
  )
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
  assert f"{tmp_path / 'ckpt'}: not an exfiqa checkpoint (config/metadata: " in lines[0]
  assert re.search(message, lines[0]), lines[0]
  assert not (tmp_path / "e.npz").exists()


def test_non_finite_embeddings_are_refused_in_one_line(tmp_path):
  """A checkpoint whose weights overflow (written directly, as convert now refuses them):
  `embed` exits 2 with one stderr line naming the array and an image, and writes
  nothing (before: all-NaN embeddings, exit 0). A real process."""
  import os
  import subprocess
  import sys

  import jax

  config = FRConfig.for_family("arcface", **SIZES)
  _, params, stats = split(create(config, seed=3))
  params = jax.tree.map(lambda a: a * 1e30, params)
  save(str(tmp_path / "ckpt"), config, params, stats)
  (tmp_path / "imgs").mkdir()
  for i, x in enumerate(faces(3, 4)):
    Image.fromarray(x).save(tmp_path / "imgs" / f"f{i}.png")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  r = subprocess.run(
    [sys.executable, "-m", "exfiqa_jax.cli", *_args(tmp_path, tmp_path / "e.npz")],
    env={**os.environ, "PYTHONPATH": root, "JAX_COMPILATION_CACHE_DIR": ""},
    capture_output=True,
    text=True,
    timeout=300,
  )
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
  assert "the model's fr/model/embeddings are NaN or infinite for 3 of 3 images" in lines[0]
  assert "(first: " in lines[0] and "f0.png" in lines[0], lines[0]
  assert not (tmp_path / "e.npz").exists()
