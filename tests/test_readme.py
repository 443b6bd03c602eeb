"""Every code block of README.md runs as written (issue 26), so the README cannot drift.

The convention, for whoever adds a README section:

- A fenced block with no language, or `bash` / `sh`, runs as one bash script
  (`set -euo pipefail`); a `python` block runs in a fresh interpreter. Any other
  language must be skipped (below).
- Each block runs in its own empty temporary folder, with this environment's `exfiqa`
  and `python` first on PATH, after the stand-ins that `STANDINS` names for it: tiny
  files at the very paths the block names (a checkpoint, face crops, FR releases, the
  demo's output). A key of `STANDINS` is a piece of text found in exactly one block.
  A block that needs a file no stand-in provides fails here: give it one.
- A block that cannot run here (it installs packages, needs several hosts, or the
  released weights and benchmark files for hours) is preceded by the line
  `<!-- readme-test: skip (the reason) -->` (other HTML comments may sit between it
  and the fence). The reason is required, and skips are kept few (`MAX_SKIPS`).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = pathlib.Path(sys.executable).parent
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*(?:\((.*)\))?\s*-->")
MAX_SKIPS = 4
# depth of the stand-in checkpoints and inputs where the block does not need the demo's
# model: 15 exit subsets instead of 4,095, so a sweep or a job's sweep takes seconds
SHALLOW = 4
# blocks that need PyTorch (the `convert` extra): converting, exporting, or importing it
NEEDS_TORCH = re.compile(r"exfiqa (convert|export) |^import torch|^from torch", re.M)
TIMEOUT = 300  # seconds per block; they take 2-40 s each here


def blocks(text: str) -> list[dict]:
  """Fenced blocks of `text`: [{line, lang, code, skip (the reason, or None)}]."""
  out, lines, i = [], text.splitlines(), 0
  while i < len(lines):
    m = re.match(r"^```(\S*)\s*$", lines[i])
    if not m:
      i += 1
      continue
    start, j = i, i + 1
    while not lines[j].startswith("```"):
      j += 1
    skip, k = None, start - 1
    while k >= 0 and lines[k].strip().startswith("<!--"):
      s = SKIP.search(lines[k])
      if s:
        skip = (s.group(1) or "").strip()
      k -= 1
    out.append(
      dict(line=start + 1, lang=m.group(1), code="\n".join(lines[start + 1 : j]) + "\n", skip=skip)
    )
    i = j + 1
  return out


BLOCKS = blocks(README.read_text())


def _id(b: dict) -> str:
  first = b["code"].strip().splitlines()[0]
  return f"L{b['line']}-" + re.sub(r"[^A-Za-z0-9]+", "_", first)[:40].strip("_")


# ---------------------------------------------------------------- stand-ins


DEMO = "exfiqa demo --out out/demo --pairs 300"  # the README's demo block


@pytest.fixture(scope="session")
def xla_cache(tmp_path_factory):
  """One compilation cache for every block's processes (they compile the same programs)."""
  return str(tmp_path_factory.mktemp("readme_xla_cache"))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, xla_cache):
  """The README's `exfiqa demo` block, run once as written; its out/demo folder is the
  stand-in of the blocks that read the demo's output. -> (out/demo, the run)."""
  (block,) = [b for b in BLOCKS if DEMO in b["code"]]
  where = tmp_path_factory.mktemp("readme_demo")
  r = _run(["bash", "-c", "set -euo pipefail\n" + block["code"]], where, xla_cache)
  return where / "out" / "demo", r


@pytest.fixture(scope="session")
def demo_out(demo_run):
  return demo_run[0]


def _crops(folder: pathlib.Path, n: int = 6) -> None:
  from PIL import Image

  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  for i in range(n):
    img = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    Image.fromarray(img).save(folder / f"{i:06d}.png")


def _checkpoint(demo: pathlib.Path, dst: pathlib.Path) -> None:
  shutil.copytree(demo / "checkpoint", dst)


def _demo(demo: pathlib.Path, cwd: pathlib.Path) -> None:
  shutil.copytree(demo, cwd / "out" / "demo")


def _fr_release(family: str, path: pathlib.Path, layout=None) -> None:
  from tests.fr_helpers import reference_state_dict, tiny

  torch = pytest.importorskip("torch")
  _, sd = reference_state_dict(tiny(family))
  path.parent.mkdir(parents=True, exist_ok=True)
  torch.save(layout(sd) if layout else sd, path)


def _magface_training(sd):
  import torch

  return {
    "epoch": 25,
    "arch": "iresnet100",
    "state_dict": {
      **{f"features.module.{k}": v for k, v in sd.items()},
      "parallel_fc.weight": torch.randn(7, 32),
    },
    "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
  }


def standin_convert(cwd, demo):
  pytest.importorskip("torch")
  # the demo's .pt in the released layout, without its settings file: --num-heads tells
  shutil.copy(demo / "files" / "vit_fiqa_demo.pt", cwd / "model.pt")


def standin_fr(cwd, demo):
  _fr_release("arcface", cwd / "ms1mv2_arcface_r100_fp16" / "backbone.pth")
  _fr_release("elasticface", cwd / "295672backbone.pth")
  _fr_release("magface", cwd / "magface_epoch_00025.pth", _magface_training)
  _fr_release("curricularface", cwd / "CurricularFace_Backbone.pth")
  _crops(cwd / "faces")


def standin_mxnet(cwd, demo):
  from tests.convert.mxnet_files import write_checkpoint

  (cwd / "model-r100-ii").mkdir()
  write_checkpoint(str(cwd / "model-r100-ii"), prefix="model")


def _shallow_checkpoint(dst: pathlib.Path) -> None:
  """A depth-SHALLOW ViT-FIQA checkpoint with random weights at `dst`."""
  from exfiqa_jax import ViTConfig, save
  from tests.score_helpers import random_variables

  cfg = ViTConfig(image_size=112, patch_size=28, width=16, depth=SHALLOW, num_heads=2, mlp_dim=32)
  save(str(dst), cfg, *random_variables(cfg)[1:])


def standin_score(cwd, demo):
  _shallow_checkpoint(cwd / "vit_s_ckpt")
  _crops(cwd / "crops", n=3)


def standin_sweep(cwd, demo):
  """out/lfw/inputs/lfw_self.npz (the demo's saved inputs, first SHALLOW exits), a
  depth-SHALLOW vit_s_ckpt, and an `exfiqa score` file of those exits with its pairs."""
  z = dict(np.load(demo / "inputs" / "demo_self.npz"))
  z["exit_scores"], z["cost"] = z["exit_scores"][:, :SHALLOW], z["cost"][:SHALLOW]
  (cwd / "out" / "lfw" / "inputs").mkdir(parents=True)
  np.savez(cwd / "out" / "lfw" / "inputs" / "lfw_self.npz", **z)
  _shallow_checkpoint(cwd / "vit_s_ckpt")
  paths = np.array([f"{i:06d}.png" for i in range(len(z["exit_scores"]))])
  np.savez(cwd / "scores.npz", paths=paths, exit_scores=z["exit_scores"])
  with open(cwd / "pairs.txt", "w") as f:
    for a, b, label, s in zip(z["a"], z["b"], z["labels"], z["comparison"], strict=True):
      f.write(f"{paths[a]} {paths[b]} {int(label)} {float(s)!r}\n")


def standin_adaptive(cwd, demo):
  _demo(demo, cwd)
  _crops(cwd / "crops")


def standin_demo_output(cwd, demo):
  _demo(demo, cwd)


def standin_datasets(cwd, demo):
  """data/bins/lfw.bin (a small generated benchmark) and vit_s_ckpt."""
  from exfiqa_jax.data.synthetic import make_verification_bin

  make_verification_bin(str(cwd / "data" / "bins" / "lfw.bin"), num_pairs=20)
  _checkpoint(demo, cwd / "vit_s_ckpt")


def standin_evaluate_lfw(cwd, demo):
  """data/bins/lfw.bin and weights/vit_fiqa, what configs/lfw.py names."""
  from exfiqa_jax.data.synthetic import make_verification_bin

  make_verification_bin(str(cwd / "data" / "bins" / "lfw.bin"), num_pairs=20)
  _shallow_checkpoint(cwd / "weights" / "vit_fiqa")


# text found in exactly one block -> what it needs in its folder
STANDINS = {
  "exfiqa convert model.pt vit_s_ckpt": standin_convert,
  "exfiqa convert ms1mv2_arcface_r100_fp16/backbone.pth": standin_fr,
  "--family arcface-mxnet": standin_mxnet,
  "exfiqa score --checkpoint vit_s_ckpt --images crops/": standin_score,
  "exfiqa attention --checkpoint vit_s_ckpt": standin_score,
  "exfiqa sweep --config lfw": standin_sweep,
  "exfiqa adaptive --inputs out/demo/inputs/demo_self.npz": standin_adaptive,
  "from exfiqa_jax.adaptive import calibrate": standin_demo_output,
  "builder_from_directory": standin_demo_output,
  "data.build(": standin_datasets,
  "exfiqa evaluate --config lfw": standin_evaluate_lfw,
}


# ---------------------------------------------------------------- running


def _env(cache: str | None = None) -> dict:
  env = dict(os.environ)
  env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
  env["PYTHONPATH"] = str(ROOT)  # the stand-in helpers live in tests/
  env["MPLBACKEND"] = "Agg"
  env.setdefault("JAX_PLATFORMS", "cpu")
  if cache is not None:
    env["JAX_COMPILATION_CACHE_DIR"] = cache
  return env


def _run(cmd: list[str], cwd, cache: str | None = None) -> subprocess.CompletedProcess:
  r = subprocess.run(cmd, cwd=cwd, env=_env(cache), capture_output=True, text=True, timeout=TIMEOUT)
  assert r.returncode == 0, (
    f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
  )
  return r


def _standins(code: str) -> list:
  return [f for key, f in STANDINS.items() if key in code]


def test_every_skip_has_a_reason_and_skips_are_few():
  skipped = [b for b in BLOCKS if b["skip"] is not None]
  for b in skipped:
    assert len(b["skip"]) >= 10, f"README.md:{b['line']}: a readme-test skip needs a reason"
  assert len(skipped) <= MAX_SKIPS, [b["line"] for b in skipped]
  assert len(BLOCKS) - len(skipped) >= 12


def test_every_block_has_a_known_language():
  for b in BLOCKS:
    if b["skip"] is None:
      assert b["lang"] in ("", "bash", "sh", "python"), f"README.md:{b['line']}: {b['lang']!r}"


def test_every_standin_names_one_block():
  for key in STANDINS:
    hits = [b["line"] for b in BLOCKS if key in b["code"]]
    assert len(hits) == 1, f"stand-in {key!r} matches README blocks at lines {hits}"
    assert all(BLOCKS[i]["skip"] is None for i, b in enumerate(BLOCKS) if b["line"] in hits)


def test_the_parser_reads_fences_languages_and_skips():
  text = (
    "a\n<!-- readme-test: skip (needs a pod) -->\n<!-- main -->\n```\nx\n```\n```python\ny=1\n```\n"
  )
  got = blocks(text)
  assert [(b["line"], b["lang"], b["code"], b["skip"]) for b in got] == [
    (4, "", "x\n", "needs a pod"),
    (7, "python", "y=1\n", None),
  ]


RUN = [b for b in BLOCKS if b["skip"] is None]


@pytest.mark.parametrize("block", RUN, ids=[_id(b) for b in RUN])
def test_readme_block_runs(block, tmp_path, demo_run, xla_cache):
  demo, run = demo_run
  if DEMO in block["code"]:  # run by the demo_run fixture, as written
    assert (demo / "summary.md").is_file() and (demo / "report.html").is_file()
    assert "wrote out/demo/report.html" in run.stdout  # the demo says where its report is
    return
  if NEEDS_TORCH.search(block["code"]):  # the `convert` extra (the newest stack has none)
    pytest.importorskip("torch")
  cwd = tmp_path / "work"
  cwd.mkdir()
  for setup in _standins(block["code"]):
    setup(cwd, demo)
  if block["lang"] == "python":
    (tmp_path / "block.py").write_text(block["code"])
    _run([sys.executable, str(tmp_path / "block.py")], cwd, xla_cache)
  else:
    (tmp_path / "block.sh").write_text("set -euo pipefail\n" + block["code"])
    _run(["bash", str(tmp_path / "block.sh")], cwd, xla_cache)


def test_convert_is_an_attribute_of_the_package():
  """`exfiqa_jax.convert.from_torch(...)`, as the README writes it, after `import
  exfiqa_jax` alone (PEP 562: the subpackage is imported on first use)."""
  pytest.importorskip("torch")
  code = (
    "import exfiqa_jax, sys\n"
    "assert 'exfiqa_jax.convert' not in sys.modules\n"
    "from exfiqa_jax.models.config import ViTConfig\n"
    "from tests.score_helpers import TINY, random_variables\n"
    "_, p, s = random_variables(TINY)\n"
    "sd = exfiqa_jax.convert.to_torch(TINY, p, s)\n"
    "cfg, p2, s2 = exfiqa_jax.convert.from_torch(sd, num_heads=TINY.num_heads)\n"
    "assert cfg == TINY, cfg\n"
    "print('ok')\n"
  )
  r = _run([sys.executable, "-c", code], ROOT)
  assert r.stdout.strip() == "ok"
