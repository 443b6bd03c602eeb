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
    "exfiqa embed: error: FR model 'model' (arcface) takes 224x224 images; the images are "
    "112x112 aligned crops"
  ), lines[0]
  assert not (tmp_path / "e.npz").exists() and not (tmp_path / "w").exists()
