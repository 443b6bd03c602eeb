"""Building datasets (issue 14): build parameters recorded and a changed source
rebuilt, kills at every rename of the finalize, memory bounded whatever the size."""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from exfiqa_jax import data
from exfiqa_jax.data.build import dataset_dir
from tests.data.test_data import _png
from tests.score_helpers import faces

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "PYTHONPATH": ROOT}


def _bin(path, n_pairs, seed=0):
  imgs = faces(2 * n_pairs, seed)
  issame = [i % 2 == 0 for i in range(n_pairs)]
  with open(path, "wb") as f:
    pickle.dump(([_png(x) for x in imgs], issame), f, protocol=4)
  return imgs


def test_a_changed_source_is_built_again(tmp_path):
  _bin(tmp_path / "demo.bin", 3)
  data.build("verification_bin", "demo", str(tmp_path), str(tmp_path / "ds"))
  built = dataset_dir(str(tmp_path / "ds"), "verification_bin", "demo")
  first = os.stat(os.path.join(built, "metadata.json")).st_ino
  data.build("verification_bin", "demo", str(tmp_path), str(tmp_path / "ds"))  # unchanged: kept
  assert os.stat(os.path.join(built, "metadata.json")).st_ino == first
  imgs = _bin(tmp_path / "demo.bin", 2, seed=4)  # as `exfiqa demo --pairs` with fewer pairs
  data.build("verification_bin", "demo", str(tmp_path), str(tmp_path / "ds"))
  ds = data.load("verification_bin/demo", str(tmp_path / "ds"))
  assert len(ds.images) == 4 and len(ds.pairs.a) == 2
  np.testing.assert_array_equal(ds.images.read([3, 0]), imgs[[3, 0]])
  with open(os.path.join(built, "metadata.json")) as f:
    info = json.load(f)
  assert info["params"]["source"][0][0] == "demo.bin" and info["num_images"] == 4
  # Another option is another build too.
  (tmp_path / "f").mkdir()
  Image.fromarray(imgs[0]).save(tmp_path / "f" / "a.png")
  data.build("face_images", "f", str(tmp_path / "f"), str(tmp_path / "ds"))
  data.build("face_images", "f", str(tmp_path / "f"), str(tmp_path / "ds"), "bgr")
  assert data.load("face_images/f", str(tmp_path / "ds")).images.channel_order == "bgr"
  assert sorted(os.listdir(os.path.dirname(built))) == ["3.0.0"]  # nothing left beside


KILL = textwrap.dedent("""
    import os, signal, sys
    real = {"replace": os.replace, "rename": os.rename}
    def dying(name):
      def fn(src, dst, *a, **k):
        base, point = os.path.basename(str(dst)), sys.argv[1]
        if base == point or (point.startswith(".") and point in base):
          os.kill(os.getpid(), signal.SIGKILL)
        return real[name](src, dst, *a, **k)
      return fn
    os.replace, os.rename = dying("replace"), dying("rename")
    from exfiqa_jax import data
    data.build("verification_bin", "demo", sys.argv[2], sys.argv[3])
""")


@pytest.mark.parametrize(
  "point,rebuild", [("3.0.0", False), ("3.0.0", True), (".old-", True)]
)  # the renames of the finalize: new into place; old away (a rebuild only), new into place
def test_a_kill_in_the_finalize_never_leaves_a_dataset_that_loads(tmp_path, point, rebuild):
  ds_dir = str(tmp_path / "ds")
  old = _bin(tmp_path / "demo.bin", 2)
  if rebuild:
    data.build("verification_bin", "demo", str(tmp_path), ds_dir)
  new = _bin(tmp_path / "demo.bin", 3, seed=5)
  r = subprocess.run(
    [sys.executable, "-c", KILL, point, str(tmp_path), ds_dir],
    env=ENV,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == -9, r.stderr[-2000:]
  if rebuild and point == "3.0.0":  # killed between moving the old build away and the new in
    with pytest.raises(FileNotFoundError, match="is not built"):
      data.load("verification_bin/demo", ds_dir)
  elif rebuild:  # killed before the old build was moved: it still loads, whole
    ds = data.load("verification_bin/demo", ds_dir)
    np.testing.assert_array_equal(ds.images.read([0, 3]), old[[0, 3]])
  else:
    with pytest.raises(FileNotFoundError, match="is not built"):
      data.load("verification_bin/demo", ds_dir)
  parent = os.path.join(ds_dir, "verification_bin", "demo")
  assert any(n.startswith(".3.0.0.") for n in os.listdir(parent))  # the killed one's leftovers
  data.build("verification_bin", "demo", str(tmp_path), ds_dir)
  ds = data.load("verification_bin/demo", ds_dir)
  np.testing.assert_array_equal(ds.images.read([5, 0]), new[[5, 0]])
  assert os.listdir(parent) == ["3.0.0"]  # leftovers of the dead process removed


def _padded_png(pad_mb: int) -> bytes:
  """A valid 112x112 PNG followed by `pad_mb` MiB after its end (readers ignore it):
  a large encoded image that decodes in no time."""
  return _png(faces(1, 8)[0]) + bytes(pad_mb << 20)


def test_build_memory_does_not_grow_with_the_dataset(tmp_path):
  """320 MiB of encoded images built under a 160 MiB allowance: the images
  stream to the records file (the former writer buffered up to 1,000 MiB, then needed
  TensorFlow to spill)."""
  (tmp_path / "big").mkdir()
  (tmp_path / "one.png").write_bytes(_padded_png(4))
  for i in range(80):
    os.link(tmp_path / "one.png", tmp_path / "big" / f"{i:03d}.png")
  code = textwrap.dedent("""
      import resource, sys
      from exfiqa_jax import data
      # The libraries the build imports lazily are loaded first: the allowance bounds the
      # data, not their code (tensorflow_datasets maps OpenCV, about 140 MiB, where the
      # `ijbc` extra is installed).
      import tensorflow_datasets, array_record.python.array_record_module
      vm = [int(x.split()[1]) << 10 for x in open("/proc/self/status") if x[:6] == "VmSize"][0]
      hard = resource.getrlimit(resource.RLIMIT_AS)[1]
      resource.setrlimit(resource.RLIMIT_AS, (vm + (160 << 20), hard))
      data.build("face_images", "big", sys.argv[1], sys.argv[2])
      resource.setrlimit(resource.RLIMIT_AS, (hard, hard))  # the reader's threads want room
      ds = data.load("face_images/big", sys.argv[2])
      mine = ds.images.read([0, 79])
      import numpy as np, tensorflow_datasets as tfds
      from exfiqa_jax.data.build import dataset_dir
      src = tfds.builder_from_directory(dataset_dir(sys.argv[2], "face_images", "big"))
      theirs = src.as_data_source(split="images").__getitems__([0, 79])
      same = all(np.array_equal(t["image"], m) for t, m in zip(theirs, mine))
      ids = [t["id"].decode() for t in theirs] + [str(t["index"]) for t in theirs]
      print(len(ds.images), mine.shape, same, *ids, "tensorflow" in sys.modules)
  """)
  r = subprocess.run(
    [sys.executable, "-c", code, str(tmp_path / "big"), str(tmp_path / "ds")],
    env=ENV,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  out = r.stdout.split()
  assert out == [
    "80",
    "(2,",
    "112,",
    "112,",
    "3)",
    "True",
    "000.png",
    "079.png",
    "0",
    "79",
    "False",
  ]
  records = os.path.join(
    dataset_dir(str(tmp_path / "ds"), "face_images", "big"),
    "face_images-images.array_record-00000-of-00001",
  )
  assert os.path.getsize(records) > 320 << 20
