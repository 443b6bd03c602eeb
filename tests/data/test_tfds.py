"""Built datasets are TFDS datasets (issue 28): every builder's output opens with
`tfds.builder_from_directory(...).as_data_source()`, TensorFlow is never imported while
building, loading and scoring, and a build of an earlier layout is rebuilt, never read."""

import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from exfiqa_jax import data
from exfiqa_jax.data.build import dataset_dir
from tests.data.test_data import _png
from tests.score_helpers import faces

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sources(tmp_path):
  """One small dataset of each builder: {builder: (manual_dir, channel_order, images)}."""
  imgs = faces(6, 11)
  with open(tmp_path / "demo.bin", "wb") as f:
    pickle.dump(([_png(x) for x in imgs], [True, False, True]), f, protocol=4)
  cr = tmp_path / "cr"
  (cr / "images").mkdir(parents=True)
  for i, x in enumerate(imgs[:4]):
    Image.fromarray(x).save(cr / "images" / f"p{i}.png")
  (cr / "image_path_list.txt").write_text("".join(f"images/p{i}.png\n" for i in range(4)))
  (cr / "pair_list.txt").write_text("p0 p1 1\np2 p3 0\n")
  ij = tmp_path / "ij"
  (ij / "images").mkdir(parents=True)
  for i, x in enumerate(imgs[:3]):
    Image.fromarray(x).save(ij / "images" / f"{i}.jpg", format="PNG")
  (ij / "ijbc_face_tid_mid.txt").write_text("0.jpg 30 7\n1.jpg 11 8\n2.jpg 30 9\n")
  (ij / "ijbc_template_pair_label.txt").write_text("30 11 1\n")
  fo = tmp_path / "fo"
  fo.mkdir()
  for i, x in enumerate(imgs[:2]):
    Image.fromarray(x).save(fo / f"f{i}.png")
  return {
    "verification_bin": (tmp_path, None, imgs, [f"{i:06d}" for i in range(6)]),
    "cr_fiqa_folder": (cr, "bgr", imgs[:4], [f"p{i}" for i in range(4)]),
    "ijbc_1to1": (ij, None, imgs[:3], ["0.jpg", "1.jpg", "2.jpg"]),
    "face_images": (fo, None, imgs[:2], ["f0.png", "f1.png"]),
  }


def test_every_builder_writes_a_tfds_dataset(tmp_path):
  for builder, (src, order, imgs, ids) in _sources(tmp_path).items():
    data.build(builder, "demo", str(src), str(tmp_path / "ds"), order)
    path = dataset_dir(str(tmp_path / "ds"), builder, "demo")
    b = tfds.builder_from_directory(path)
    assert (b.info.name, str(b.info.version)) == (builder, "3.0.0")
    assert list(b.info.splits) == ["images"] and b.info.splits["images"].num_examples == len(ids)
    extra = ["media", "template"] if builder == "ijbc_1to1" else []
    assert sorted(b.info.features) == sorted(["id", "image", "index", *extra])
    assert b.info.features["image"].shape == (112, 112, 3)
    assert b.info.features["image"].encoding_format == "png"
    assert b.info.metadata["channel_order"] == (order or "rgb")
    assert b.info.metadata["arrays"] == "arrays.npz"
    src_ds = b.as_data_source(split="images")
    rows = [src_ds[i] for i in range(len(src_ds))]
    np.testing.assert_array_equal(np.stack([r["image"] for r in rows]), imgs)
    assert [r["id"].decode() for r in rows] == ids
    assert [int(r["index"]) for r in rows] == list(range(len(ids)))
    if extra:
      assert [int(r["template"]) for r in rows] == [30, 11, 30]
      assert [int(r["media"]) for r in rows] == [7, 8, 9]
    # Stored bytes are the source files' bytes, not a re-encoding.
    raw = b.as_data_source(split="images", decoders={"image": tfds.decode.SkipDecoding()})
    if builder == "face_images":
      assert raw[1]["image"] == (src / "f1.png").read_bytes()
    # The project reads the same records (its own decoder), pixels identical.
    ds = data.load(f"{builder}/demo", str(tmp_path / "ds"))
    np.testing.assert_array_equal(ds.images.read(range(len(ids))), imgs)


# A process where `import tensorflow` (or any submodule) fails: a finder answers for
# tensorflow and its loader raises; every attempt is recorded, caught or not.
NO_TF = textwrap.dedent("""
    import importlib.abc, importlib.machinery, sys
    ATTEMPTS = []
    class _Refuse(importlib.abc.Loader):
      def create_module(self, spec):
        ATTEMPTS.append(spec.name)
        raise RuntimeError(f"import of {spec.name} refused")
      def exec_module(self, module):
        pass
    class _Finder(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
          return importlib.machinery.ModuleSpec(name, _Refuse())
    sys.meta_path.insert(0, _Finder())
    try:
      import tensorflow
      raise SystemExit("the hook did not refuse tensorflow")
    except RuntimeError:
      ATTEMPTS.clear()
""")

SCORE = NO_TF + textwrap.dedent("""
    import json, pickle, sys
    import numpy as np
    import tensorflow_datasets as tfds
    from exfiqa_jax import data
    from exfiqa_jax.data.build import dataset_dir
    from exfiqa_jax.scoring.score import score
    from tests.score_helpers import faces, random_variables
    tmp = sys.argv[1]
    imgs = faces(10, 5)
    ds = data.load(data.build("verification_bin", "demo", tmp, tmp + "/ds"), tmp + "/ds")
    src = tfds.builder_from_directory(dataset_dir(tmp + "/ds", "verification_bin", "demo"))
    rows = src.as_data_source()["images"]
    tfds_images = np.stack([rows[i]["image"] for i in range(len(rows))])
    variables = random_variables(seed=2)
    built = score(variables, ds.images, batch_size=4, progress=False)
    direct = score(variables, data.ArraySource(imgs, ds.images.ids), batch_size=4,
                   progress=False)
    from_tfds = score(variables, data.ArraySource(tfds_images, ds.images.ids), batch_size=4,
                      progress=False)
    print(json.dumps(dict(
      attempts=ATTEMPTS, tf_loaded=[m for m in sys.modules if m.split(".")[0] == "tensorflow"],
      pixels=bool(np.array_equal(tfds_images, imgs)),
      same=bool(np.array_equal(built.exit_scores, direct.exit_scores)),
      same_tfds=bool(np.array_equal(from_tfds.exit_scores, direct.exit_scores)),
      ids=built.ids.tolist() == ds.images.ids.tolist(),
      shape=list(built.exit_scores.shape), spread=float(np.ptp(direct.exit_scores)),
      pairs=len(ds.pairs.a))))
""")


def test_build_load_and_score_without_tensorflow(tmp_path):
  """TensorFlow cannot be imported: building, opening with tfds.builder_from_directory
  (...).as_data_source() and scoring work, with the exits of the images decoded directly."""
  with open(tmp_path / "demo.bin", "wb") as f:
    pickle.dump(([_png(x) for x in faces(10, 5)], [True, False] * 2 + [True]), f, protocol=4)
  r = subprocess.run(
    [sys.executable, "-c", SCORE, str(tmp_path)],
    env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"},
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  assert out["attempts"] == [] and out["tf_loaded"] == []
  assert out["pixels"] and out["same"] and out["same_tfds"] and out["ids"]
  assert out["shape"] == [10, 3] and out["spread"] > 0 and out["pairs"] == 5


def test_the_refusing_hook_refuses(tmp_path):
  """The hook of the test above fails a process that imports tensorflow (so its
  passing means something)."""
  code = NO_TF + "import tensorflow.compat.v2\n"
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
  assert r.returncode == 1 and "RuntimeError: import of tensorflow refused" in r.stderr


def _old_layout(path, images):
  """A build of the former layout (2.0.0): images.array_record (8-byte index + encoded
  image a record) and build.json."""
  from array_record.python.array_record_module import ArrayRecordWriter

  os.makedirs(path)
  w = ArrayRecordWriter(os.path.join(path, "images.array_record"), "group_size:1,uncompressed")
  for i, x in enumerate(images):
    w.write(struct.pack("<q", i) + _png(x))
  w.close()
  with open(os.path.join(path, "build.json"), "w") as f:
    json.dump(dict(params=dict(format="exfiqa-dataset-2"), num_images=len(images)), f)


def test_an_earlier_layout_is_built_again_never_read(tmp_path):
  ds_dir = str(tmp_path / "ds")
  old, new = faces(4, 1), faces(6, 2)
  with open(tmp_path / "demo.bin", "wb") as f:
    pickle.dump(([_png(x) for x in new], [True, False, True]), f, protocol=4)
  parent = os.path.join(ds_dir, "verification_bin", "demo")
  _old_layout(os.path.join(parent, "2.0.0"), old)
  with pytest.raises(FileNotFoundError, match=r"is not built .*2\.0\.0 is an earlier layout"):
    data.load("verification_bin/demo", ds_dir)
  data.build("verification_bin", "demo", str(tmp_path), ds_dir)
  ds = data.load("verification_bin/demo", ds_dir)
  np.testing.assert_array_equal(ds.images.read(range(6)), new)
  assert sorted(os.listdir(parent)) == ["2.0.0", "3.0.0"]  # the old one left alone
  # A 3.0.0 folder whose description is of another format: refused, then rebuilt.
  built = dataset_dir(ds_dir, "verification_bin", "demo")
  with open(os.path.join(built, "metadata.json")) as f:
    meta = json.load(f)
  meta["params"]["format"] = "exfiqa-dataset-2"
  with open(os.path.join(built, "metadata.json"), "w") as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match="not a dataset of this version; build it again"):
    data.load("verification_bin/demo", ds_dir)
  data.build("verification_bin", "demo", str(tmp_path), ds_dir)
  np.testing.assert_array_equal(
    data.load("verification_bin/demo", ds_dir).images.read([5]), new[[5]]
  )


def test_a_misordered_record_is_refused(tmp_path):
  """The stored index and id of every record read are checked against the position."""
  with open(tmp_path / "demo.bin", "wb") as f:
    pickle.dump(([_png(x) for x in faces(4, 3)], [True, False]), f, protocol=4)
  data.build("verification_bin", "demo", str(tmp_path), str(tmp_path / "ds"))
  ds = data.load("verification_bin/demo", str(tmp_path / "ds"))
  swapped = ds.images.ids[[1, 0, 2, 3]]
  bad = data.RecordSource(ds.images.records, swapped, "rgb")
  with pytest.raises(ValueError, match=r"position 0 holds image 0 \('000000'\), not '000001'"):
    bad.read([0])


def test_tfds_is_imported_only_to_build_or_read():
  """`import exfiqa_jax`, its data package and every command's --help leave TFDS unloaded."""
  code = textwrap.dedent("""
      import pkgutil, sys
      import exfiqa_jax, exfiqa_jax.data, exfiqa_jax.cli as cli
      for c in sorted(m.name for m in pkgutil.iter_modules(cli.__path__) if m.name[0] != "_"):
        try:
          cli.main([c, "--help"])
        except SystemExit:
          pass
      print(sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow_datasets", "tensorflow"}))
  """)
  r = subprocess.run(
    [sys.executable, "-c", code],
    env={**os.environ, "PYTHONPATH": ROOT},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.strip().splitlines()[-1] == "[]"


def test_the_image_feature_describes_the_stored_files(tmp_path):
  """Grey and RGB files of two encodings: 3 channels (TFDS repeats grey as the project's
  decoder does), no single encoding; RGBA files: 4 channels, png. TFDS's pixels are the
  project's (alpha aside)."""
  rng = np.random.default_rng(4)
  (tmp_path / "mixed").mkdir()
  (tmp_path / "rgba").mkdir()
  Image.fromarray(rng.integers(0, 256, (112, 112), dtype=np.uint8)).save(tmp_path / "mixed/a.png")
  Image.fromarray(faces(1, 6)[0]).save(tmp_path / "mixed/b.jpg", quality=90)
  Image.fromarray(rng.integers(0, 256, (112, 112, 4), dtype=np.uint8)).save(tmp_path / "rgba/c.png")
  for name, shape, encoding in [("mixed", (112, 112, 3), None), ("rgba", (112, 112, 4), "png")]:
    data.build("face_images", name, str(tmp_path / name), str(tmp_path / "ds"))
    b = tfds.builder_from_directory(dataset_dir(str(tmp_path / "ds"), "face_images", name))
    image = b.info.features["image"]
    assert (image.shape, image.encoding_format) == (shape, encoding)
    rows = b.as_data_source(split="images")
    mine = data.load(f"face_images/{name}", str(tmp_path / "ds")).images.read(range(len(rows)))
    for i in range(len(rows)):
      assert rows[i]["image"].shape == shape
      np.testing.assert_array_equal(rows[i]["image"][..., :3], mine[i])


def test_the_header_reader_agrees_with_pil():
  """The build reads each image's format and mode from its header (no PIL open): equal to
  PIL's for the plain cases, None (PIL asked) otherwise."""
  import io

  from exfiqa_jax.data.records import _header

  rng = np.random.default_rng(9)
  saved = []
  for shape in [(112, 112), (112, 112, 3), (112, 112, 4), (112, 112, 2)]:
    im = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    for fmt, kw in [("PNG", {}), ("JPEG", {}), ("JPEG", dict(progressive=True, exif=bytes(99)))]:
      if fmt == "JPEG" and im.mode in ("RGBA", "LA"):
        continue
      buf = io.BytesIO()
      im.save(buf, format=fmt, **kw)
      saved.append(buf.getvalue())
  rgb = Image.fromarray(faces(1, 9)[0])
  for im, fmt in [
    (rgb.convert("P"), "PNG"),
    (rgb.convert("CMYK"), "JPEG"),
    (rgb.convert("1"), "PNG"),
  ]:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    saved.append(buf.getvalue())
  found = []
  for data_ in saved:
    with Image.open(io.BytesIO(data_)) as im:
      assert _header(data_) in (None, (im.format, im.mode))
    found.append(_header(data_))
  assert found.count(None) == 1  # the 1-bit PNG only
  assert ("JPEG", "CMYK") in found and ("PNG", "P") in found and ("JPEG", "L") in found
