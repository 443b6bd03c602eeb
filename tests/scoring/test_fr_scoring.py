"""The combined pass: ViT-FIQA exits and every FR model's embeddings from one pass over the
images are bit for bit `exfiqa score`'s and `exfiqa embed`'s, on 1 and on 8 CPU devices."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import exfiqa_jax
from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax.convert import convert_file
from exfiqa_jax.data import ArraySource
from exfiqa_jax.models.checkpoint import load
from exfiqa_jax.scoring.score import FRModel, score
from tests.fr_helpers import reference_state_dict, tiny
from tests.score_helpers import TINY, faces, random_variables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# In a fresh interpreter (its own device count): the two commands, then the combined pass.
WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from exfiqa_jax.cli import main
    from exfiqa_jax.data import from_files
    from exfiqa_jax.models.checkpoint import load
    from exfiqa_jax.scoring.score import FRModel, score
    d = json.loads(sys.argv[1])
    common = ["--images", d["imgs"], "--batch-size", "16", "--quiet"]
    assert main(["score", "--checkpoint", d["vit"], "--out", d["out"] + "score.npz", *common]) == 0
    assert main(["embed", "--checkpoint", d["arc"], "--out", d["out"] + "arc.npz", "--flip",
                 *common]) == 0
    assert main(["embed", "--checkpoint", d["cur"], "--out", d["out"] + "cur.npz", *common]) == 0
    vit, arc, cur = (load(d[k]) for k in ("vit", "arc", "cur"))
    fr = [FRModel("arc", arc.config, arc[1:], flip=True), FRModel("cur", cur.config, cur[1:])]
    s = score(vit[1:], from_files(d["imgs"]).images, d["out"] + "work", fr_models=fr,
              batch_size=16, chunk_size=32, progress=False)
    np.savez(d["out"] + "combined.npz", ids=s.ids, exit_scores=s.exit_scores,
             embeddings=s.embeddings, arc=s.fr["arc"]["embeddings"],
             arc_flip=s.fr["arc"]["embeddings_flip"], cur=s.fr["cur"]["embeddings"])
""")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  d = tmp_path_factory.mktemp("fr_pass")
  _, params, stats = random_variables(seed=6)
  exfiqa_jax.save(str(d / "vit"), TINY, params, stats)
  for name, family in (("arc", "arcface"), ("cur", "curricularface")):
    torch.save(reference_state_dict(tiny(family), seed=8)[1], d / f"{name}.pt")
    convert_file(str(d / f"{name}.pt"), str(d / name), family=family)
  (d / "imgs").mkdir()
  for i, x in enumerate(faces(37, 2)):  # 2 full batches of 16 and a padded one of 5
    Image.fromarray(x).save(d / "imgs" / f"{i:02d}.png")
  return d


def test_combined_pass_equals_score_and_embed_on_1_and_8_devices(checkpoints, tmp_path):
  d = checkpoints
  (tmp_path / "w.py").write_text(WORKER)
  got = {}
  for n in (1, 8):
    out = str(tmp_path / f"d{n}_")
    args = {"imgs": str(d / "imgs"), "vit": str(d / "vit"), "arc": str(d / "arc")}
    args.update(cur=str(d / "cur"), out=out)
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_DEFAULT_MATMUL_PRECISION": "highest"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
    r = subprocess.run(
      [sys.executable, str(tmp_path / "w.py"), json.dumps(args)],
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    c, s = np.load(out + "combined.npz"), np.load(out + "score.npz")
    arc, cur = np.load(out + "arc.npz"), np.load(out + "cur.npz")
    assert c["ids"].tolist() == s["paths"].tolist() == arc["paths"].tolist()
    np.testing.assert_array_equal(c["exit_scores"], s["exit_scores"])
    np.testing.assert_array_equal(c["embeddings"], s["embeddings"])
    np.testing.assert_array_equal(c["arc"], arc["embeddings"])
    np.testing.assert_array_equal(c["arc_flip"], arc["embeddings_flip"])
    np.testing.assert_array_equal(c["cur"], cur["embeddings"])
    assert "embeddings_flip" not in cur.files and c["arc"].shape == (37, 32)
    got[n] = c
  for k in ("exit_scores", "arc", "arc_flip", "cur"):  # 2 rows a device vs 16: rounding only
    np.testing.assert_allclose(got[8][k], got[1][k], atol=1e-5, rtol=1e-5)


def test_resumed_combined_run_and_run_mismatch(checkpoints, tmp_path):
  arc = load(str(checkpoints / "arc"))
  vit = random_variables(seed=6)
  source = ArraySource(faces(10, 1), np.asarray([f"i{i}" for i in range(10)]))
  fr = [FRModel("arc", arc.config, arc[1:], flip=True)]
  kw = dict(batch_size=2, chunk_size=4, progress=False)
  first = score(vit, source, str(tmp_path / "run"), fr_models=fr, **kw)
  os.remove(tmp_path / "run" / "chunk-000001.npz")
  again = score(vit, source, str(tmp_path / "run"), fr_models=fr, **kw)
  for a, b in ((first.exit_scores, again.exit_scores), (first.fr["arc"], again.fr["arc"])):
    if isinstance(a, dict):
      assert a.keys() == b.keys() == {"embeddings", "embeddings_flip"}
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    else:
      np.testing.assert_array_equal(a, b)
  no_flip = [FRModel("arc", arc.config, arc[1:])]
  with pytest.raises(ValueError, match=r"another run \(differs in \['fr_models'\]\)"):
    score(vit, source, str(tmp_path / "run"), fr_models=no_flip, **kw)
  alone = score(None, source, fr_models=fr, **kw)
  np.testing.assert_array_equal(alone.fr["arc"]["embeddings"], first.fr["arc"]["embeddings"])
  with pytest.raises(ValueError, match="nothing to run"):
    score(None, source)
