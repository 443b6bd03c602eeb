"""IJB-C 1:1 verification (docs/protocol.md §8): images, template and media ids, template pairs.

`manual_dir` holds `ijbc_face_tid_mid.txt` (`image template media` a line)
and `ijbc_template_pair_label.txt` (`templateA templateB label`), either at
its top or under `meta/`, and either

- the release's loose crops under `loose_crop/` with `ijbc_name_5pts_score.txt`
  (`image x1 y1 ... x5 y5 detector_score` a line): each image named in the
  face list is aligned as CR-FIQA `IJB-C Evaluation/extract_IJB.py` (and
  insightface `eval_ijbc.py`) does: decoded by OpenCV, a similarity transform
  estimated by scikit-image from its 5 landmarks to the ArcFace reference
  points (x + 8 for 112x112), warped by OpenCV `warpAffine` to 112x112 with
  border 0 (needs the `ijbc` extra: `pip install 'exfiqa-jax[ijbc]'`). The
  crops are stored once, losslessly (PNG), keyed by their source file name,
  as true RGB; or
- aligned 112x112 crops under `images/`, named as in the face list.

The detector scores, where the 5-point file is present, are kept
(`detector_score`, [N]); they weight templates only when asked (docs/protocol.md
§6). Pairs index the sorted template ids.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image

from exfiqa_jax.data.base import FaceBuilder, file_bytes, unique_ids
from exfiqa_jax.data.images import MAX_PIXELS
from exfiqa_jax.data.text import inside, read_lines

FACES, PAIRS = "ijbc_face_tid_mid.txt", "ijbc_template_pair_label.txt"
LANDMARKS, LOOSE = "ijbc_name_5pts_score.txt", "loose_crop"
# The ArcFace 112x112 reference points (insightface), x shifted by 8 as extract_IJB.py does.
REFERENCE = np.array(
  [
    [30.2946, 51.6963],
    [65.5318, 51.5014],
    [48.0252, 71.7366],
    [33.5493, 92.3655],
    [62.7299, 92.2041],
  ],
  dtype=np.float32,
)
REFERENCE[:, 0] += 8.0
CROP = 112


def _libraries():
  """(cv2, skimage.transform), or a one-line ImportError naming the extra."""
  try:
    import cv2
    from skimage import transform
  except ImportError as e:
    raise ImportError(
      f"aligning IJB-C's loose crops needs OpenCV and scikit-image ({e.name} is missing): "
      "pip install 'exfiqa-jax[ijbc]'"
    ) from None
  return cv2, transform


def similarity(landmarks: np.ndarray) -> np.ndarray:
  """float32 [5, 2] landmarks (x, y) -> float64 [2, 3], the affine matrix of scikit-image's
  least-squares similarity transform onto REFERENCE (as extract_IJB.py estimates it)."""
  _, transform = _libraries()
  src = np.asarray(landmarks, np.float32).reshape(5, 2)
  if hasattr(transform.SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
    t = transform.SimilarityTransform.from_estimate(src, REFERENCE)
    ok = bool(t)
  else:
    t = transform.SimilarityTransform()
    ok = t.estimate(src, REFERENCE)
  if not ok or not np.isfinite(t.params).all():
    raise ValueError(f"no similarity transform for landmarks {src.tolist()}")
  return t.params[0:2, :]


def align(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3] loose crop, float32 [5, 2] landmarks -> uint8 [112, 112, 3]: OpenCV
  `warpAffine` by `similarity(landmarks)`, bilinear, border 0 (channels kept as given)."""
  cv2, _ = _libraries()
  return cv2.warpAffine(image, similarity(landmarks), (CROP, CROP), borderValue=0.0)


def decode_loose(data: bytes, name: str) -> np.ndarray:
  """A loose crop's JPEG/PNG bytes -> uint8 [H, W, 3] true RGB, decoded by OpenCV as
  extract_IJB.py's `cv2.imread` does; the size is checked from the header first."""
  cv2, _ = _libraries()
  try:
    with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as im:
      w, h = im.size
  except (OSError, Image.DecompressionBombError) as e:
    raise ValueError(f"{name}: cannot decode image ({e})") from None
  if w * h > MAX_PIXELS:
    raise ValueError(f"{name}: {w}x{h} pixels is over the limit of {MAX_PIXELS:,}")
  bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
    raise ValueError(f"{name}: cannot decode image")
  return np.ascontiguousarray(bgr[..., ::-1])


def read_landmarks(path: str) -> dict[str, tuple[np.ndarray, float]]:
  """`image x1 y1 ... x5 y5 score` lines -> {image: (float32 [5, 2], score)}."""
  out = {}
  for n, line in enumerate(read_lines(path, "IJB-C 5-point list"), 1):
    r = line.split()
    try:
      values = np.asarray([float(v) for v in r[1:]], dtype=np.float64)
    except ValueError:
      values = np.zeros(0)
    if len(r) != 12 or values.size != 11 or not np.isfinite(values).all():
      raise ValueError(f"{path}:{n}: lines must be 'image x1 y1 ... x5 y5 detector_score'")
    if r[0] in out:
      raise ValueError(f"{path}:{n}: image {r[0]!r} is listed twice")
    out[r[0]] = (values[:10].astype(np.float32).reshape(5, 2), float(values[10]))
  return out


def _encoded_crops(paths, landmarks) -> Iterator[bytes]:
  """Each loose crop aligned and encoded as PNG (lossless)."""
  for path, lmk in zip(paths, landmarks, strict=True):
    crop = align(decode_loose(file_bytes(path), path), lmk)
    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="PNG")
    yield buf.getvalue()


def _find(manual_dir: str, name: str) -> str:
  for path in (os.path.join(manual_dir, name), os.path.join(manual_dir, "meta", name)):
    if os.path.exists(path):
      return path
  raise FileNotFoundError(f"{manual_dir}: neither {name} nor meta/{name} exists")


def _int_table(path: str) -> np.ndarray:
  """`a b label` integer lines -> int64 [P, 3] (fast for the 15.7M pairs)."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", DeprecationWarning)  # raised on a non-integer token
      with open(path, encoding="utf-8", errors="replace") as f:
        values = np.fromstring(f.read(), dtype=np.int64, sep=" ")
  except (ValueError, DeprecationWarning):
    values = np.zeros(1)
  if values.size % 3:
    raise ValueError(f"{path}: every line must hold three integers 'templateA templateB label'")
  return values.reshape(-1, 3)


class Ijbc1to1(FaceBuilder):
  """IJB-C 1:1: aligned crops, their template and media ids, labelled template pairs."""

  name = "ijbc_1to1"

  def _raw(self) -> bool:
    """True for the release's loose crops; one line when the folder holds neither layout,
    or both."""
    aligned = os.path.isdir(os.path.join(self.manual_dir, "images"))
    loose = os.path.isdir(os.path.join(self.manual_dir, LOOSE))
    if aligned and loose:
      raise ValueError(
        f"{self.manual_dir}: holds both images/ (aligned crops) and {LOOSE}/ (the release); "
        "give a folder with one of them"
      )
    if not (aligned or loose):
      raise FileNotFoundError(
        f"{self.manual_dir}: neither images/ (aligned 112x112 crops) nor {LOOSE}/ "
        f"(the release's loose crops, with meta/{LANDMARKS}) exists"
      )
    return loose

  def _landmark_file(self) -> str | None:
    if self._raw():
      return _find(self.manual_dir, LANDMARKS)
    try:
      return _find(self.manual_dir, LANDMARKS)
    except FileNotFoundError:
      return None

  def manifest(self) -> list[str]:
    lmk = self._landmark_file()
    return [_find(self.manual_dir, FACES), _find(self.manual_dir, PAIRS), *([lmk] if lmk else [])]

  def _read(self):
    manual_dir = self.manual_dir
    raw = self._raw()
    if raw:
      _libraries()  # the extra is there, before any work
    faces = _find(manual_dir, FACES)
    rows = [line.split() for line in read_lines(faces, "IJB-C face list")]
    if any(len(r) != 3 or not (r[1].isdigit() and r[2].isdigit()) for r in rows):
      raise ValueError(f"{faces}: every line must be 'image template media' (integer ids)")
    ids = unique_ids([r[0] for r in rows], faces)
    template = np.asarray([int(r[1]) for r in rows], dtype=np.int64)
    template_ids, of_image = np.unique(template, return_inverse=True)
    pair_file = _find(manual_dir, PAIRS)
    table = _int_table(pair_file)
    pos = np.searchsorted(template_ids, table[:, :2]).clip(0, len(template_ids) - 1)
    unknown = table[:, :2][template_ids[pos] != table[:, :2]]
    if unknown.size:
      raise KeyError(
        f"{pair_file}: pairs name unknown template ids {np.unique(unknown)[:5].tolist()}"
      )
    lmk_file = self._landmark_file()
    points = read_landmarks(lmk_file) if lmk_file else None
    if points is not None:
      absent = [i for i in ids.tolist() if i not in points]
      if absent:
        raise KeyError(
          f"{lmk_file}: no landmarks for {absent[:5]} ({len(absent)} images of {faces} in all)"
        )
    images = os.path.join(manual_dir, LOOSE if raw else "images")
    paths = [inside(images, i, faces) for i in ids.tolist()]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise FileNotFoundError(f"{missing[0]}: image does not exist ({len(missing)} missing in all)")
    arrays = dict(
      template_ids=template_ids,
      template_of_image=of_image.astype(np.int64),
      media=np.asarray([int(r[2]) for r in rows], dtype=np.int64),
      pair_a=pos[:, 0].astype(np.int64),
      pair_b=pos[:, 1].astype(np.int64),
      pair_label=table[:, 2] == 1,
    )
    if points is not None:
      arrays["detector_score"] = np.asarray([points[i][1] for i in ids.tolist()], np.float64)
    if raw:
      encoded = _encoded_crops(paths, [points[i][0] for i in ids.tolist()])
    else:
      encoded = (file_bytes(p) for p in paths)
    source = "aligned from loose_crop/ (extract_IJB.py)" if raw else "images/"
    return ids, encoded, dict(channel_order="rgb", crops=source, **arrays)
