import io
import os
import pickle
import sys

import numpy as np
import pytest
from PIL import Image

from exfiqa_jax import data
from exfiqa_jax.data.verification_bin import read_bin
from tests.score_helpers import faces


def _png(array) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  return buf.getvalue()


def _built_dirs(data_dir):
  """Folders holding any file of a build (TFDS's info or the build's metadata)."""
  return [
    r for r, _, files in os.walk(data_dir) if {"metadata.json", "dataset_info.json"} & set(files)
  ]


@pytest.mark.parametrize("protocol", [2, 4])
def test_verification_bin_round_trip(tmp_path, protocol):
  imgs = faces(6)
  issame = [True, False, True]
  with open(tmp_path / "lfw.bin", "wb") as f:
    pickle.dump(([_png(x) for x in imgs], issame), f, protocol=protocol)
  name = data.build("verification_bin", "lfw", str(tmp_path), str(tmp_path / "tfds"))
  ds = data.load(name, str(tmp_path / "tfds"))
  assert ds.images.ids.tolist() == [f"{i:06d}" for i in range(6)]
  assert ds.images.channel_order == "rgb"
  np.testing.assert_array_equal(ds.images.read([5, 0, 3]), imgs[[5, 0, 3]])
  np.testing.assert_array_equal(ds.pairs.a, [0, 2, 4])
  np.testing.assert_array_equal(ds.pairs.b, [1, 3, 5])
  np.testing.assert_array_equal(ds.pairs.labels, issame)
  assert ds.templates is None
  assert "tensorflow" not in sys.modules  # built and read without TensorFlow
  assert [os.path.basename(d) for d in _built_dirs(tmp_path / "tfds")] == ["3.0.0"]


class _Evil:
  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
  evil = _Evil()
  evil.marker = tmp_path / "ran"
  (tmp_path / "lfw.bin").write_bytes(pickle.dumps(([evil], [True])))
  with pytest.raises(ValueError, match=r"lfw\.bin: refused .*asks for posix\.system"):
    read_bin(str(tmp_path / "lfw.bin"))
  with pytest.raises(ValueError, match="refused"):
    data.build("verification_bin", "lfw", str(tmp_path), str(tmp_path / "tfds"))
  assert not evil.marker.exists()
  assert _built_dirs(tmp_path / "tfds") == []


def test_bin_shape_errors(tmp_path):
  path = tmp_path / "x.bin"
  path.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
  with pytest.raises(ValueError, match=r"x\.bin: 3 images for 1 pairs"):
    read_bin(str(path))
  path.write_bytes(pickle.dumps({"images": []})[:-3])
  with pytest.raises(ValueError, match=r"x\.bin: refused or unreadable"):
    read_bin(str(path))
  with pytest.raises(FileNotFoundError, match="no such verification .bin"):
    read_bin(str(tmp_path / "none.bin"))


def _cr_fiqa(root, images, stems, pairs):
  (root / "imgs").mkdir(parents=True)
  for x, s in zip(images, stems, strict=True):
    Image.fromarray(x).save(root / "imgs" / f"{s}.png")
  (root / "image_path_list.txt").write_text("".join(f"imgs/{s}.png\n" for s in stems))
  (root / "pair_list.txt").write_text("".join(f"{a} {b} {label}\n" for a, b, label in pairs))


def test_cr_fiqa_round_trip_with_channel_order(tmp_path):
  imgs = faces(4, 1)
  _cr_fiqa(
    tmp_path / "XQLFW",
    imgs,
    ["p1_0", "p1_1", "p2_0", "p3_0"],
    [("p1_0", "p1_1", 1), ("p3_0", "p2_0", 0)],
  )
  with pytest.raises(ValueError, match="needs channel_order in"):
    data.build("cr_fiqa_folder", "xqlfw", str(tmp_path / "XQLFW"), str(tmp_path / "tfds"))
  data.build("cr_fiqa_folder", "xqlfw", str(tmp_path / "XQLFW"), str(tmp_path / "tfds"), "bgr")
  ds = data.load("cr_fiqa_folder/xqlfw", str(tmp_path / "tfds"))
  assert ds.images.ids.tolist() == ["p1_0", "p1_1", "p2_0", "p3_0"]
  assert ds.images.channel_order == "bgr"
  np.testing.assert_array_equal(ds.images.read([0, 1, 2, 3]), imgs)  # stored order, as is
  np.testing.assert_array_equal(ds.pairs.a, [0, 3])
  np.testing.assert_array_equal(ds.pairs.b, [1, 2])
  np.testing.assert_array_equal(ds.pairs.labels, [True, False])
  # A list written relative to a data root above the dataset folder.
  (tmp_path / "XQLFW" / "image_path_list.txt").write_text(
    "".join(f"XQLFW/imgs/{s}.png\n" for s in ["p1_0", "p1_1", "p2_0", "p3_0"])
  )
  data.build(
    "cr_fiqa_folder",
    "rooted",
    str(tmp_path / "XQLFW"),
    str(tmp_path / "tfds"),
    "rgb",
    image_root=str(tmp_path),
  )
  ds = data.load("cr_fiqa_folder/rooted", str(tmp_path / "tfds"))
  np.testing.assert_array_equal(ds.images.read([3, 0]), imgs[[3, 0]])


def test_ijbc_round_trip(tmp_path):
  imgs = faces(5, 2)
  (tmp_path / "images").mkdir()
  (tmp_path / "meta").mkdir()
  names = ["1.jpg", "2.jpg", "3.jpg", "4.jpg", "5.jpg"]
  for x, n in zip(imgs, names, strict=True):
    Image.fromarray(x).save(tmp_path / "images" / n, format="PNG")  # lossless under any name
  tid_mid = [(30, 7), (30, 8), (30, 8), (11, 9), (52, 10)]
  (tmp_path / "meta" / "ijbc_face_tid_mid.txt").write_text(
    "".join(f"{n} {t} {m}\n" for n, (t, m) in zip(names, tid_mid, strict=True))
  )
  (tmp_path / "meta" / "ijbc_template_pair_label.txt").write_text("30 11 0\n52 30 1\n11 52 0\n")
  data.build("ijbc_1to1", "ijbc", str(tmp_path), str(tmp_path / "tfds"))
  ds = data.load("ijbc_1to1/ijbc", str(tmp_path / "tfds"))
  assert ds.images.ids.tolist() == names
  np.testing.assert_array_equal(ds.images.read([4, 1]), imgs[[4, 1]])
  t = ds.templates
  np.testing.assert_array_equal(t.ids, [11, 30, 52])
  np.testing.assert_array_equal(t.ids[t.of_image], [30, 30, 30, 11, 52])
  np.testing.assert_array_equal(t.media, [7, 8, 8, 9, 10])
  np.testing.assert_array_equal(t.ids[ds.pairs.a], [30, 52, 11])
  np.testing.assert_array_equal(t.ids[ds.pairs.b], [11, 30, 52])
  np.testing.assert_array_equal(ds.pairs.labels, [False, True, False])
  (tmp_path / "meta" / "ijbc_template_pair_label.txt").write_text("30 99 0\n")
  with pytest.raises(KeyError, match=r"unknown template ids \[99\]"):
    data.build("ijbc_1to1", "bad", str(tmp_path), str(tmp_path / "tfds"))


def test_face_images_folder(tmp_path):
  imgs = faces(3, 3)
  for x, n in zip(imgs, ["c.png", "a.png", "b.png"], strict=True):
    Image.fromarray(x).save(tmp_path / n)
  data.build("face_images", "mine", str(tmp_path), str(tmp_path / "tfds"))
  ds = data.load("face_images/mine", str(tmp_path / "tfds"))
  assert ds.images.ids.tolist() == ["a.png", "b.png", "c.png"]
  np.testing.assert_array_equal(ds.images.read([0, 2]), imgs[[1, 0]])
  assert ds.pairs is None
  direct = data.from_files(str(tmp_path))
  np.testing.assert_array_equal(direct.images.read([0, 1, 2]), imgs[[1, 2, 0]])
  (tmp_path / "sub").mkdir()
  Image.fromarray(imgs[0]).save(tmp_path / "sub" / "d.png")
  (tmp_path / "list.txt").write_text("sub/d.png\nb.png\n")
  data.build("face_images", "listed", str(tmp_path / "list.txt"), str(tmp_path / "tfds"), "bgr")
  ds = data.load("face_images/listed", str(tmp_path / "tfds"))
  assert ds.images.ids.tolist() == ["sub/d.png", "b.png"] and ds.images.channel_order == "bgr"
  np.testing.assert_array_equal(ds.images.read([0, 1]), imgs[[0, 2]])


@pytest.mark.parametrize(
  "case,error,message",
  [
    ("missing", FileNotFoundError, r"imgs/b\.png: listed image does not exist"),
    ("duplicate", ValueError, r"duplicate image ids \['a'\]"),
    ("unknown", KeyError, r"pairs name unknown ids \['zz'\]"),
    ("unreadable", ValueError, r"cannot decode image"),
    ("size", ValueError, r"b: images must be 112x112"),
  ],
)
def test_bad_inputs_give_clear_errors_and_no_dataset(tmp_path, case, error, message):
  root = tmp_path / "ds"
  _cr_fiqa(root, faces(2), ["a", "b"], [("a", "b", 1)])
  if case == "missing":
    os.remove(root / "imgs" / "b.png")
  elif case == "duplicate":
    (root / "image_path_list.txt").write_text("imgs/a.png\nimgs/b.png\nother/a.png\n")
  elif case == "unknown":
    (root / "pair_list.txt").write_text("a b 1\na zz 0\n")
  elif case == "unreadable":
    (root / "imgs" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
  elif case == "size":
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "imgs" / "b.png")
  with pytest.raises(error, match=message):
    data.build("cr_fiqa_folder", "x", str(root), str(tmp_path / "tfds"), "rgb")
  assert _built_dirs(tmp_path / "tfds") == []
  assert not (tmp_path / "tfds").exists()  # issue 14: no empty folders left either
  with pytest.raises(FileNotFoundError, match="is not built"):
    data.load("cr_fiqa_folder/x", str(tmp_path / "tfds"))


def test_ijbc_bad_pair_file(tmp_path):
  (tmp_path / "images").mkdir()
  Image.fromarray(faces(1)[0]).save(tmp_path / "images" / "1.jpg", format="PNG")
  (tmp_path / "ijbc_face_tid_mid.txt").write_text("1.jpg 5 6\n")
  for text in ("5 5 1\n5 x 0\n", "5 5\n"):
    (tmp_path / "ijbc_template_pair_label.txt").write_text(text)
    with pytest.raises(ValueError, match="must hold three integers"):
      data.build("ijbc_1to1", "bad", str(tmp_path), str(tmp_path / "tfds"))
