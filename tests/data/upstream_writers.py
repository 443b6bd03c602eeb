"""The benchmark folders as CR-FIQA's extraction scripts write them, for the tests.

Each writer follows its script line by line (CR-FIQA `feature_extraction/extract_bin.py`,
`extract_xqlfw.py`, `extract_adience.py`, `IJB-C Evaluation/extract_IJB.py`), with
OpenCV doing what OpenCV does there. MXNet's `mx.image.imdecode` is OpenCV's decoder
followed by a BGR->RGB swap, which is what `mx_imdecode` does.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="needs the ijbc extra (pip install 'exfiqa-jax[ijbc]')")
transform = pytest.importorskip("skimage.transform", reason="needs the ijbc extra")

ARCFACE_REFERENCE = np.array(
  [
    [30.2946, 51.6963],
    [65.5318, 51.5014],
    [48.0252, 71.7366],
    [33.5493, 92.3655],
    [62.7299, 92.2041],
  ],
  dtype=np.float32,
)


def mx_imdecode(data: bytes) -> np.ndarray:
  """mx.image.imdecode: OpenCV's decode, channels to RGB."""
  return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def smooth_faces(n: int, seed: int, size: tuple[int, int] = (112, 112)) -> np.ndarray:
  """uint8 [n, H, W, 3] smooth random colour images (JPEG-friendly)."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (n, 7, 7, 3)).astype(np.float32)
  out = [cv2.resize(c, size[::-1], interpolation=cv2.INTER_CUBIC) for c in coarse]
  noise = rng.normal(0, 6, (n, *size, 3))
  return np.clip(np.stack(out) + noise, 0, 255).astype(np.uint8)


def write_bin(path: str, rgb: np.ndarray, issame: list[bool]) -> list[bytes]:
  """An InsightFace verification .bin: a pickle of (encoded JPEGs, issame)."""
  bins = [bytes(cv2.imencode(".jpg", x[..., ::-1])[1]) for x in rgb]  # true-colour JPEGs
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    pickle.dump((bins, issame), f, protocol=4)
  return bins


def extract_bin(path: str, outpath: str) -> None:
  """extract_bin.py: data/<name>.bin -> <outpath>/<name>/ (outpath ends in quality_data)."""
  with open(path, "rb") as f:
    bins, issame_list = pickle.load(f)
  dataset_name = path.split("/")[-1].split(".")[0]
  rel_img_path = os.path.join(outpath.split("/")[-1], dataset_name, "images")
  outpath = os.path.join(outpath, dataset_name)
  os.makedirs(os.path.join(outpath, "images"))
  pair_list = np.zeros((len(issame_list), 3), np.int16)
  with open(os.path.join(outpath, "image_path_list.txt"), "w") as txt_file:
    for idx in range(len(bins)):
      img = mx_imdecode(bins[idx])
      cv2.imwrite(os.path.join(outpath, "images", "%05d.jpg" % idx), img)
      txt_file.write(os.path.join(rel_img_path, "%05d.jpg" % idx) + "\n")
      if idx % 2 == 0:
        pair_list[idx // 2] = [idx, idx + 1, issame_list[idx // 2]]
  np.savetxt(os.path.join(outpath, "pair_list.txt"), pair_list, fmt="%05d")


def extract_xqlfw(align_path: str, pairs: list[tuple], outpath: str, name: str = "XQLFW"):
  """extract_xqlfw.py: aligned `<person>/<person>_<nnnn>.jpg` files and pairs.txt rows
  (person, i, j) or (person1, i, person2, j) -> <outpath>/<name>/."""
  rel_img_path = os.path.join(outpath.split("/")[-1], name, "images")
  outpath = os.path.join(outpath, name)
  os.makedirs(os.path.join(outpath, "images"))

  def copy_img(person, img_id):
    img_name = f"{person}_{str(img_id).zfill(4)}.jpg"
    img = cv2.imread(os.path.join(align_path, person, img_name))
    img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    cv2.imwrite(os.path.join(outpath, "images", img_name), img)
    return img_name

  with (
    open(os.path.join(outpath, "image_path_list.txt"), "w") as txt_file,
    open(os.path.join(outpath, "pair_list.txt"), "w") as pair_list,
  ):
    for pair in pairs:
      if len(pair) == 3:
        img_name1, img_name2 = copy_img(pair[0], pair[1]), copy_img(pair[0], pair[2])
      else:
        img_name1, img_name2 = copy_img(pair[0], pair[1]), copy_img(pair[2], pair[3])
      txt_file.write(os.path.join(rel_img_path, img_name1) + "\n")
      txt_file.write(os.path.join(rel_img_path, img_name2) + "\n")
      pair_list.write(f"{img_name1} {img_name2} {int(len(pair) == 3)}\n")


def upstream_align(path: str, landmarks: np.ndarray) -> np.ndarray:
  """extract_IJB.py's steps for one loose crop, up to the array it hands cv2.imwrite
  (uint8 [112, 112, 3], true RGB)."""
  ref_lmk = ARCFACE_REFERENCE.copy()
  ref_lmk[:, 0] += 8.0
  img = cv2.imread(path)
  lmk = np.asarray(landmarks, dtype=np.float32).reshape((5, 2))
  tform = transform.SimilarityTransform()
  tform.estimate(lmk, ref_lmk)
  M = tform.params[0:2, :]
  img = cv2.warpAffine(img, M, (112, 112), borderValue=0.0)
  return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)


def write_ijbc_release(
  root: str,
  templates: list[list[int]],
  pairs: list[tuple[int, int, int]],
  seed: int = 0,
) -> dict:
  """A synthetic IJB-C release `root/{loose_crop,meta}`: templates[t] lists the media id of
  each of template t's images (template ids 1..T). Each loose crop is a smooth image of
  its own size with a face whose 5 landmarks are the ArcFace points under a known
  similarity (scale, rotation, shift). Returns {name: (landmarks [5, 2], score)}."""
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(root, "loose_crop"))
  os.makedirs(os.path.join(root, "meta"))
  info, faces, lines = {}, [], []
  k = 0
  for t, media in enumerate(templates, 1):
    for m in media:
      k += 1
      name = f"{k}.jpg"
      h, w = int(rng.integers(230, 300)), int(rng.integers(230, 300))
      img = smooth_faces(1, seed * 1000 + k, (h, w))[0]
      cv2.imwrite(os.path.join(root, "loose_crop", name), img)
      s, a = rng.uniform(1.2, 1.9), rng.uniform(-0.4, 0.4)
      rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
      shift = np.array([rng.uniform(0, w - 112 * s), rng.uniform(0, h - 112 * s)])
      lmk = ARCFACE_REFERENCE @ rot.T + shift + rng.normal(0, 0.7, (5, 2))
      score = float(rng.uniform(0.3, 1.0))
      coords = " ".join(f"{v:.3f}" for v in lmk.reshape(-1))
      lines.append(f"{name} {coords} {score:.6f}\n")
      parsed = np.array([float(x) for x in coords.split()], dtype=np.float32).reshape(5, 2)
      info[name] = (parsed, float(f"{score:.6f}"))  # as the readers see them
      faces.append(f"{name} {t} {m}\n")
  meta = os.path.join(root, "meta")
  with open(os.path.join(meta, "ijbc_name_5pts_score.txt"), "w") as f:
    f.writelines(lines)
  with open(os.path.join(meta, "ijbc_face_tid_mid.txt"), "w") as f:
    f.writelines(faces)
  with open(os.path.join(meta, "ijbc_template_pair_label.txt"), "w") as f:
    f.writelines(f"{a} {b} {label}\n" for a, b, label in pairs)
  return info
