import os

import numpy as np
from PIL import Image

import exfiqa_jax
from exfiqa_jax import apply, preprocess
from exfiqa_jax.cli import main
from tests.score_helpers import TINY, faces, random_variables


def _setup(tmp_path, n=5):
  graphdef, params, stats = random_variables(seed=11)
  exfiqa_jax.save(str(tmp_path / "ckpt"), TINY, params, stats)
  imgs = faces(n, 4)
  (tmp_path / "imgs").mkdir()
  names = [f"face_{i}.png" for i in (3, 0, 4, 1, 2)][:n]
  for name, x in zip(names, imgs, strict=True):
    Image.fromarray(x).save(tmp_path / "imgs" / name)
  return (graphdef, params, stats), dict(zip(names, imgs, strict=True))


def test_score_folder_and_list_match_the_model(tmp_path, capsys):
  variables, by_name = _setup(tmp_path)
  out = tmp_path / "scores.npz"
  assert (
    main(
      [
        "score",
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--images",
        str(tmp_path / "imgs"),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--quiet",
      ]
    )
    == 0
  )
  assert "wrote" in capsys.readouterr().out
  z = np.load(out)
  names = sorted(by_name)
  assert z["paths"].tolist() == names
  ref = apply(*variables, preprocess(np.stack([by_name[n] for n in names])))
  assert z["exit_scores"].dtype == np.float32 and z["exit_scores"].shape == (5, TINY.depth)
  np.testing.assert_allclose(z["exit_scores"], ref.exits, atol=1e-5, rtol=0)
  np.testing.assert_array_equal(z["quality"], z["exit_scores"][:, -1])
  np.testing.assert_allclose(z["embeddings"], ref.embedding, atol=1e-5, rtol=1e-5)
  # A list file, in its own order, stored as BGR.
  listed = ["imgs/face_4.png", "imgs/face_0.png"]
  (tmp_path / "list.txt").write_text("\n".join(listed) + "\n")
  assert (
    main(
      [
        "score",
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--images",
        str(tmp_path / "list.txt"),
        "--out",
        str(out),
        "--channel-order",
        "bgr",
        "--batch-size",
        "2",
        "--quiet",
        "--force",  # issue 14: an existing --out is kept unless --force
      ]
    )
    == 0
  )
  z = np.load(out)
  assert z["paths"].tolist() == listed
  swapped = np.stack([by_name[os.path.basename(p)][..., ::-1] for p in listed])
  np.testing.assert_allclose(
    z["exit_scores"], apply(*variables, preprocess(swapped)).exits, atol=1e-5, rtol=0
  )


def test_unreadable_image_is_an_error_and_writes_nothing(tmp_path, capsys):
  _setup(tmp_path, 3)
  (tmp_path / "imgs" / "face_0.png").write_bytes(b"not a png")
  out = tmp_path / "scores.npz"
  assert (
    main(
      [
        "score",
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--images",
        str(tmp_path / "imgs"),
        "--out",
        str(out),
        "--quiet",
      ]
    )
    == 2
  )
  err = capsys.readouterr().err
  assert "exfiqa score: error:" in err and "face_0.png: cannot decode image" in err
  assert not out.exists() and [f for f in os.listdir(tmp_path) if f.startswith(".")] == []
  assert (
    main(
      [
        "score",
        "--checkpoint",
        str(tmp_path / "none"),
        "--images",
        str(tmp_path / "imgs"),
        "--out",
        str(out),
      ]
    )
    == 2
  )
  assert "no such checkpoint folder" in capsys.readouterr().err
