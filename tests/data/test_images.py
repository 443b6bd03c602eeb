import os

import numpy as np
import pytest
from PIL import Image

from exfiqa_jax.data.images import decode, list_images, read_image, read_images


def _save(path, array, fmt=None):
  Image.fromarray(array).save(path, format=fmt)
  return str(path)


def test_png_rgb_and_grey_exact(tmp_path):
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
  grey = rng.integers(0, 256, (112, 112), dtype=np.uint8)
  np.testing.assert_array_equal(read_image(_save(tmp_path / "a.png", rgb)), rgb)
  out = read_image(_save(tmp_path / "g.png", grey))
  assert out.shape == (112, 112, 3) and out.dtype == np.uint8
  for c in range(3):  # grey is replicated to every channel
    np.testing.assert_array_equal(out[..., c], grey)


def test_jpeg_close_to_source(tmp_path):
  smooth = np.zeros((112, 112, 3), np.uint8)
  smooth[..., 0] = np.arange(112)[:, None] * 2
  smooth[..., 1] = 200
  smooth[..., 2] = np.arange(112)[None, :]
  out = read_image(_save(tmp_path / "a.jpg", smooth))
  assert np.abs(out.astype(int) - smooth).max() <= 8  # lossy, but channels in RGB order


def test_folder_sorted_and_list_file_relative(tmp_path):
  imgs = [np.full((112, 112, 3), v, np.uint8) for v in (10, 20, 30)]
  for name, im in zip(["b.png", "a.jpg", "c.PNG"], imgs, strict=True):
    _save(tmp_path / name, im, "PNG")
  (tmp_path / "notes.txt").write_text("not an image")
  names, paths = list_images(str(tmp_path))
  assert names == ["a.jpg", "b.png", "c.PNG"]
  batch = read_images(paths)
  assert batch.shape == (3, 112, 112, 3)
  np.testing.assert_array_equal(batch[:, 0, 0, 0], [20, 10, 30])
  lst = tmp_path / "list.txt"
  lst.write_text("c.PNG\n\nb.png\n")
  names, paths = list_images(str(lst))
  assert names == ["c.PNG", "b.png"]
  assert paths == [os.path.join(str(tmp_path), "c.PNG"), os.path.join(str(tmp_path), "b.png")]


def test_errors_name_the_file(tmp_path):
  bad = tmp_path / "bad.png"
  good = _save(tmp_path / "good.png", np.zeros((112, 112, 3), np.uint8))
  bad.write_bytes(open(good, "rb").read()[:60])  # truncated
  with pytest.raises(ValueError, match=r"bad\.png: cannot decode image"):
    read_image(str(bad))
  with pytest.raises(ValueError, match=r"x: cannot decode image"):
    decode(b"GIF89a not really", "x")
  with pytest.raises(FileNotFoundError, match=r"missing\.png: no such image file"):
    read_images([good, str(tmp_path / "missing.png")])
  small = _save(tmp_path / "small.png", np.zeros((100, 112, 3), np.uint8))
  with pytest.raises(ValueError, match=r"small\.png: images must be 112x112"):
    read_images([good, small])
  with pytest.raises(FileNotFoundError, match="no such folder or list file"):
    list_images(str(tmp_path / "nowhere"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="lists no images"):
    list_images(str(tmp_path / "empty"))
