"""A face-recognition checkpoint of another input size than the images (issue 27):
refused in one line before any image is scored (before: an einsum error in scoring)."""

import os
import subprocess
import sys

from PIL import Image

from exfiqa_jax.models.checkpoint import save
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.inference import create, split
from tests.score_helpers import faces

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "PYTHONPATH": ROOT, "JAX_COMPILATION_CACHE_DIR": ""}
SIZES = dict(layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8, embedding_size=16)


def test_a_224_pixel_fr_checkpoint_on_112_pixel_crops_is_one_line(tmp_path):
  config = FRConfig.for_family("arcface", image_size=224, **SIZES)
  save(str(tmp_path / "fr224"), config, *split(create(config, seed=3))[1:])
  (tmp_path / "imgs").mkdir()
  for i, x in enumerate(faces(2, 4)):
    Image.fromarray(x).save(tmp_path / "imgs" / f"f{i}.png")
  args = ["embed", "--checkpoint", tmp_path / "fr224", "--images", tmp_path / "imgs"]
  args += ["--out", tmp_path / "e.npz", "--quiet", "--work-dir", tmp_path / "w"]
  r = subprocess.run(
    [sys.executable, "-m", "exfiqa_jax.cli", *map(str, args)],
    env=ENV,
    capture_output=True,
    text=True,
    timeout=300,
  )
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
  assert lines[0] == (
    f"exfiqa embed: error: {tmp_path / 'fr224'} (arcface) takes 224x224 images; the images "
    "are 112x112 aligned crops"
  ), lines[0]
  assert not (tmp_path / "e.npz").exists() and not (tmp_path / "w").exists()


def test_resume_notices_an_image_replaced_with_same_size_and_mtime(tmp_path):
  """Uncompressed PNG crops all have one size; `cp -p` keeps the mtime: the resumed run
  compares the files' bytes (data.sources.files_content_id), so the old score of the
  replaced image is never kept (before: resumed, exit 0, the old score)."""
  import numpy as np

  import exfiqa_jax
  from tests.score_helpers import TINY, random_variables

  exfiqa_jax.save(str(tmp_path / "ckpt"), TINY, *random_variables(seed=7)[1:])
  (tmp_path / "imgs").mkdir()
  imgs = faces(3, 4)
  for i, x in enumerate(imgs):
    Image.fromarray(x).save(tmp_path / "imgs" / f"f{i}.png", compress_level=0)
  args = ["score", "--checkpoint", tmp_path / "ckpt", "--images", tmp_path / "imgs", "--quiet"]
  args += ["--work-dir", tmp_path / "w"]

  def run(out, *more):
    cmd = [sys.executable, "-m", "exfiqa_jax.cli", *map(str, [*args, "--out", out, *more])]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)

  assert run(tmp_path / "a.npz").returncode == 0
  target = tmp_path / "imgs" / "f1.png"
  st = os.stat(target)
  Image.fromarray(imgs[2][::-1].copy()).save(target, compress_level=0)  # another face
  os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
  assert os.stat(target).st_size == st.st_size and os.stat(target).st_mtime_ns == st.st_mtime_ns
  r = run(tmp_path / "b.npz")
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1 and "holds another run" in lines[0], r.stderr
  assert "content_id" in lines[0] and not (tmp_path / "b.npz").exists()
  assert run(tmp_path / "b.npz", "--force").returncode == 0
  a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
  fresh = tmp_path / "fresh.npz"
  cmd = [sys.executable, "-m", "exfiqa_jax.cli", *map(str, [*args[:-2], "--out", fresh])]
  assert subprocess.run(cmd, env=ENV, capture_output=True, timeout=300).returncode == 0
  np.testing.assert_array_equal(b["exit_scores"], np.load(fresh)["exit_scores"])
  assert not np.array_equal(a["exit_scores"][1], b["exit_scores"][1])
  np.testing.assert_array_equal(a["exit_scores"][[0, 2]], b["exit_scores"][[0, 2]])
