"""The benchmark folders exactly as CR-FIQA's extraction scripts write them: a .bin and its
extracted folder feed the networks the same arrays; XQLFW's and IJB-C's layouts; IJB-C's
loose crops aligned to the pixel as extract_IJB.py aligns them."""

import os
import shutil
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from exfiqa_jax import data
from exfiqa_jax.data.preprocess import normalize
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.fr_inference import fr_input
from tests.data.upstream_writers import (
  cv2,
  extract_bin,
  extract_xqlfw,
  smooth_faces,
  upstream_align,
  write_bin,
  write_ijbc_release,
)


def test_bin_and_its_extracted_folder_feed_the_networks_the_same_arrays(tmp_path):
  rgb = smooth_faces(8, seed=3)
  issame = [True, False, True, False]
  bins = write_bin(str(tmp_path / "data" / "lfw.bin"), rgb, issame)
  extract_bin(str(tmp_path / "data" / "lfw.bin"), str(tmp_path / "data" / "quality_data"))
  folder = tmp_path / "data" / "quality_data" / "lfw"
  assert (folder / "pair_list.txt").read_text().splitlines()[:2] == [
    "00000 00001 00001",
    "00002 00003 00000",
  ]
  assert (folder / "image_path_list.txt").read_text().splitlines()[0] == (
    "quality_data/lfw/images/00000.jpg"
  )
  tfds = str(tmp_path / "tfds")
  data.build("verification_bin", "lfw", str(tmp_path / "data"), tfds)
  data.build("cr_fiqa_folder", "lfw", str(folder), tfds, "bgr")  # data root found, no option
  b = data.load("verification_bin/lfw", tfds)
  f = data.load("cr_fiqa_folder/lfw", tfds)
  assert f.images.ids.tolist() == [f"{i:05d}" for i in range(8)]
  for x in (b, f):
    np.testing.assert_array_equal(x.pairs.a, [0, 2, 4, 6])
    np.testing.assert_array_equal(x.pairs.b, [1, 3, 5, 7])
    np.testing.assert_array_equal(x.pairs.labels, issame)
  stored_b, stored_f = b.images.read(range(8)), f.images.read(range(8))
  # What upstream feeds: cv2.imread of the extracted JPEGs, unconverted: true RGB.
  fed = np.stack([cv2.imread(str(folder / "images" / f"{i:05d}.jpg")) for i in range(8)])
  decoded = np.stack([cv2.imdecode(np.frombuffer(x, np.uint8), 1)[..., ::-1] for x in bins])
  in_memory_f = stored_f[..., ::-1]  # bgr files, swapped back
  assert np.abs(in_memory_f.astype(int) - fed).max() <= 1  # two JPEG decoders
  assert np.abs(stored_b.astype(int) - decoded).max() <= 1
  # ViT-FIQA and every FR network: the same arrays from both routes, up to the re-encoding.
  vit_b, vit_f = np.asarray(normalize(stored_b, "rgb")), np.asarray(normalize(stored_f, "bgr"))
  assert np.abs(vit_b - vit_f).max() * 127.5 <= 12 and np.abs(vit_b - vit_f).mean() * 127.5 < 2
  for family in ("arcface", "elasticface", "magface", "curricularface"):
    cfg = FRConfig.for_family(family, layers=(1, 1, 1, 1))
    fr_b = np.asarray(fr_input(jnp.asarray(stored_b), "rgb", cfg, "rgb"))
    fr_f = np.asarray(fr_input(jnp.asarray(stored_f), "bgr", cfg, "rgb"))
    scale = 127.5 if cfg.input_scale == "half" else 255.0
    assert np.abs(fr_b - fr_f).max() * scale <= 12 and np.abs(fr_b - fr_f).mean() * scale < 2
    wrong = np.asarray(fr_input(jnp.asarray(stored_f), "bgr", cfg, "bgr"))  # fed BGR
    assert np.abs(fr_b - wrong).mean() * scale > 20
    # with the files' order, the network sees cv2.imread's array exactly as upstream did
    upstream = (fed / 255.0 - 0.5) / 0.5 if cfg.input_scale == "half" else fed / 255.0
    assert np.abs(fr_f - upstream).max() * scale <= 1 + 1e-3


def _xqlfw(tmp_path):
  aligned = tmp_path / "XQLFW" / "xqlfw_aligned_112"
  imgs = smooth_faces(5, seed=4)
  people = [("Ann", 1), ("Ann", 2), ("Bob", 1), ("Cid", 1), ("Cid", 3)]
  for x, (p, i) in zip(imgs, people, strict=True):
    os.makedirs(aligned / p, exist_ok=True)
    cv2.imwrite(str(aligned / p / f"{p}_{i:04d}.jpg"), x[..., ::-1])  # true-colour files
  pairs = [("Ann", 1, 2), ("Ann", 1, "Bob", 1), ("Cid", 1, 3), ("Bob", 1, "Cid", 3)]
  extract_xqlfw(str(aligned), pairs, str(tmp_path / "data" / "quality_data"))
  return tmp_path / "data" / "quality_data" / "XQLFW"


def test_xqlfw_as_extract_xqlfw_writes_it(tmp_path):
  folder = _xqlfw(tmp_path)
  assert (folder / "pair_list.txt").read_text().splitlines()[1] == "Ann_0001.jpg Bob_0001.jpg 0"
  assert len((folder / "image_path_list.txt").read_text().splitlines()) == 8  # repeats
  tfds = str(tmp_path / "tfds")
  data.build("cr_fiqa_folder", "xqlfw", str(folder), tfds, "bgr")
  ds = data.load("cr_fiqa_folder/xqlfw", tfds)
  ids = ds.images.ids.tolist()
  assert ids == ["Ann_0001", "Ann_0002", "Bob_0001", "Cid_0001", "Cid_0003"]
  np.testing.assert_array_equal(ds.pairs.a, [0, 0, 3, 2])
  np.testing.assert_array_equal(ds.pairs.b, [1, 2, 4, 4])
  np.testing.assert_array_equal(ds.pairs.labels, [True, False, True, False])
  fed = np.stack([cv2.imread(str(folder / "images" / f"{i}.jpg")) for i in ids])
  assert np.abs(ds.images.read(range(5))[..., ::-1].astype(int) - fed).max() <= 1


def test_cr_fiqa_roots_and_refusals(tmp_path):
  folder = _xqlfw(tmp_path)
  tfds = str(tmp_path / "tfds")
  # A copy of the lists under another name: its paths start at quality_data/XQLFW, so
  # only image_root reads it; without it the missing file is named with that advice.
  copy = tmp_path / "elsewhere" / "xq"
  shutil.copytree(folder, copy)
  with pytest.raises(FileNotFoundError, match=r"xq/quality_data/XQLFW/images/Ann_0001\.jpg: .*"):
    data.build("cr_fiqa_folder", "a", str(copy), tfds, "bgr")
  data.build("cr_fiqa_folder", "b", str(copy), tfds, "bgr", image_root=str(tmp_path / "data"))
  assert data.load("cr_fiqa_folder/b", tfds).images.ids.size == 5
  # Both readings name existing files: refused in one line.
  os.makedirs(folder / "quality_data" / "XQLFW" / "images")
  os.link(folder / "images" / "Ann_0001.jpg", folder / "quality_data/XQLFW/images/Ann_0001.jpg")
  with pytest.raises(ValueError, match="exists both under .* name the folder .* image_root"):
    data.build("cr_fiqa_folder", "c", str(folder), tfds, "bgr")
  # A label of another value, and a pair id that is one image's name and another's stem.
  (folder / "pair_list.txt").write_text("Ann_0001 Ann_0002 00002\n")
  with pytest.raises(ValueError, match=r"label 0 or 1 \(zero-padded allowed\)"):
    data.build("cr_fiqa_folder", "d", str(folder), tfds, "bgr", image_root=str(tmp_path / "data"))


def test_pair_id_that_is_a_name_and_a_stem_is_refused(tmp_path):
  root = tmp_path / "ds"
  os.makedirs(root / "imgs")
  for name, x in zip(["a.jpg", "a.jpg.png"], smooth_faces(2, 1), strict=True):
    cv2.imwrite(str(root / "imgs" / name), x)
  (root / "image_path_list.txt").write_text("imgs/a.jpg\nimgs/a.jpg.png\n")
  (root / "pair_list.txt").write_text("a.jpg a 1\n")
  with pytest.raises(ValueError, match="pair id 'a.jpg' is one image's file name and another"):
    data.build("cr_fiqa_folder", "x", str(root), str(tmp_path / "tfds"), "rgb")


TEMPLATES = [[1], [2, 2, 3], [4], [5, 5], [6, 7]]  # media of each template's images
PAIRS = [(1, 2, 1), (3, 4, 0), (5, 1, 0), (2, 3, 1), (4, 5, 1)]


def test_ijbc_release_aligned_to_the_pixel_as_extract_ijb(tmp_path):
  info = write_ijbc_release(str(tmp_path / "IJBC"), TEMPLATES, PAIRS, seed=5)
  tfds = str(tmp_path / "tfds")
  data.build("ijbc_1to1", "ijbc", str(tmp_path / "IJBC"), tfds)
  ds = data.load("ijbc_1to1/ijbc", tfds)
  names = ds.images.ids.tolist()
  assert names == [f"{k}.jpg" for k in range(1, 10)]
  got = ds.images.read(range(len(names)))
  for k, n in enumerate(names):
    ref = upstream_align(str(tmp_path / "IJBC" / "loose_crop" / n), info[n][0])
    np.testing.assert_array_equal(got[k], ref)  # identical pixels, true RGB
  np.testing.assert_allclose(ds.templates.detector_score, [info[n][1] for n in names], atol=0)
  np.testing.assert_array_equal(
    ds.templates.ids[ds.templates.of_image], [1, 2, 2, 2, 3, 4, 4, 5, 5]
  )
  np.testing.assert_array_equal(ds.templates.media, [1, 2, 2, 3, 4, 5, 5, 6, 7])
  np.testing.assert_array_equal(ds.templates.ids[ds.pairs.a], [p[0] for p in PAIRS])
  # the landmarks land on the reference points (an independent check of the transform)
  from exfiqa_jax.data.ijbc import REFERENCE, similarity

  lmk = info["1.jpg"][0]
  moved = np.c_[lmk, np.ones(5)] @ similarity(lmk).T
  assert np.abs(moved - REFERENCE).max() < 4  # 0.7 px landmark noise, scaled up ~0.7x


def test_ijbc_release_refusals(tmp_path, monkeypatch):
  root = tmp_path / "IJBC"
  write_ijbc_release(str(root), TEMPLATES, PAIRS, seed=6)
  tfds = str(tmp_path / "tfds")
  lines = (root / "meta" / "ijbc_name_5pts_score.txt").read_text().splitlines()
  (root / "meta" / "ijbc_name_5pts_score.txt").write_text("\n".join(lines[1:]) + "\n")
  with pytest.raises(KeyError, match=r"ijbc_name_5pts_score\.txt: no landmarks for \['1\.jpg'\]"):
    data.build("ijbc_1to1", "a", str(root), tfds)
  (root / "meta" / "ijbc_name_5pts_score.txt").write_text(lines[0].rsplit(" ", 1)[0] + "\n")
  with pytest.raises(ValueError, match=r"5pts_score\.txt:1: lines must be 'image x1 y1 \.\.\."):
    data.build("ijbc_1to1", "b", str(root), tfds)
  (root / "meta" / "ijbc_name_5pts_score.txt").write_text("\n".join(lines) + "\n")
  monkeypatch.setitem(sys.modules, "cv2", None)
  with pytest.raises(ImportError, match=r"needs OpenCV and scikit-image .*\[ijbc\]"):
    data.build("ijbc_1to1", "c", str(root), tfds)
  monkeypatch.undo()
  os.makedirs(root / "images")
  with pytest.raises(ValueError, match="holds both images/ .* and loose_crop/"):
    data.build("ijbc_1to1", "d", str(root), tfds)
  assert not os.path.exists(tfds)
