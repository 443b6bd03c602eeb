"""The commands under faults, concurrency and misuse (issue 14): one-line errors,
the overwrite rule of every command, kills, two runs on one folder."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

import exfiqa_jax
from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax import apply, preprocess
from exfiqa_jax.cli import main
from exfiqa_jax.convert import convert_file
from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference, randomize_
from exfiqa_jax.scoring.run_folder import ids_sha256
from tests.score_helpers import TINY, faces, random_variables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXE = [sys.executable, "-m", "exfiqa_jax.cli"]
ENV = {**os.environ, "PYTHONPATH": ROOT, "JAX_COMPILATION_CACHE_DIR": ""}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A tiny checkpoint and 6 face images in a folder."""
  root = tmp_path_factory.mktemp("faults")
  variables = random_variables(seed=7)
  exfiqa_jax.save(str(root / "ckpt"), TINY, *variables[1:])
  (root / "imgs").mkdir()
  for i, x in enumerate(faces(6, 5)):
    Image.fromarray(x).save(root / "imgs" / f"f{i}.png")
  return root, variables


def _cli(args, capsys):
  """(exit status, stderr) of an in-process `exfiqa ...`."""
  try:
    code = main([str(a) for a in args])
  except SystemExit as e:  # argparse's own errors
    code = e.code
  return code, capsys.readouterr().err


def _one_line(err: str) -> str:
  lines = [x for x in err.splitlines() if x.strip()]
  assert len(lines) == 1 and "Traceback" not in err, err
  return lines[0]


def _score_args(root, out, *extra):
  return ["score", "--checkpoint", root / "ckpt", "--images", root / "imgs", "--out", out, *extra]


@pytest.mark.parametrize(
  "args,message",
  [
    (
      ["score", "--checkpoint", "c", "--images", "i", "--out", "o", "--batch-size", "0"],
      "must be at least 1, got 0",
    ),
    (
      ["attention", "--checkpoint", "c", "--images", "i", "--out", "o", "--max-images", "0"],
      "must be at least 1",
    ),
    (["demo", "--pairs", "0"], "--pairs: must be at least 1, got 0"),
    (["convert", "a.pt", "b", "--num-heads", "x"], "'x' is not an integer"),
  ],
)
def test_bad_numbers_are_one_line_usage_errors(args, message, capsys):
  code, err = _cli(args, capsys)
  assert code == 2 and message in err and "Traceback" not in err


def test_config_types_checked_before_any_work(tmp_path, capsys):
  base = ["evaluate", "--config", "demo", f"out_dir={tmp_path}/o", "checkpoint=nowhere"]
  for extra, message in [
    ("scoring.batch_size=abc", "scoring.batch_size must be a positive integer; got 'abc'"),
    ("sweep.rules=mean", "sweep.rules must be a non-empty list of names from ('mean',"),
    ("sweep.norms=('none','z')", "sweep.norms must be a non-empty list of names from"),
    ("metrics.fmrs=(2,)", "metrics.fmrs must be a non-empty list of FMRs in (0, 1)"),
  ]:
    code, err = _cli([*base, extra], capsys)
    assert code == 2 and message in _one_line(err), err
  assert not (tmp_path / "o").exists()


def test_score_out_rules_and_bad_sources(setup, tmp_path, capsys):
  root, variables = setup
  (tmp_path / "dir").mkdir()
  code, err = _cli(_score_args(root, tmp_path / "dir", "--quiet"), capsys)
  assert code == 2 and "dir is a folder; this output is a file" in _one_line(err)
  out = tmp_path / "s.npz"
  out.write_bytes(b"keep")
  code, err = _cli(_score_args(root, out, "--quiet"), capsys)
  assert code == 2 and "s.npz exists; pass --force" in _one_line(err)
  assert out.read_bytes() == b"keep"
  assert _cli(_score_args(root, out, "--quiet", "--force"), capsys)[0] == 0
  z = np.load(out)
  ref = apply(*variables, preprocess(faces(6, 5)))
  np.testing.assert_allclose(z["exit_scores"], ref.exits, atol=1e-5, rtol=0)
  code, err = _cli(
    [
      "score",
      "--checkpoint",
      root / "ckpt",
      "--images",
      root / "imgs" / "f0.png",
      "--out",
      tmp_path / "x.npz",
    ],
    capsys,
  )
  assert code == 2 and "f0.png is an image file; give a folder of images or a text file" in err


def test_list_files_refuse_escapes_duplicates_and_report_broken_links(tmp_path):
  from exfiqa_jax.data.images import list_images

  (tmp_path / "ds").mkdir()
  Image.fromarray(faces(1)[0]).save(tmp_path / "ds" / "a.png")
  Image.fromarray(faces(1)[0]).save(tmp_path / "secret.png")
  for line, message in [
    (f"{tmp_path}/secret.png", r"points outside"),
    ("../secret.png", r"'\.\./secret\.png' points outside"),
    ("a.png\na.png", r"lists 'a\.png' twice"),
  ]:
    (tmp_path / "ds" / "list.txt").write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
      list_images(str(tmp_path / "ds" / "list.txt"))
  os.remove(tmp_path / "ds" / "list.txt")
  os.symlink(tmp_path / "gone.png", tmp_path / "ds" / "b.png")
  with pytest.raises(FileNotFoundError, match=r"b\.png: broken link"):
    list_images(str(tmp_path / "ds"))


def test_ids_fingerprint_is_unambiguous():
  assert ids_sha256(["a\nb", "c"]) != ids_sha256(["a", "b\nc"])
  assert ids_sha256(["ab", "c"]) != ids_sha256(["a", "bc"])
  assert ids_sha256(["a", "b"]) == ids_sha256(np.array(["a", "b"]))


def test_damaged_checkpoint_is_one_line(setup, tmp_path, capsys):
  import shutil

  root, _ = setup
  shutil.copytree(root / "ckpt", tmp_path / "ckpt")
  shutil.rmtree(tmp_path / "ckpt" / "variables" / "ocdbt.process_0")
  code, err = _cli(
    [
      "score",
      "--checkpoint",
      tmp_path / "ckpt",
      "--images",
      root / "imgs",
      "--out",
      tmp_path / "s.npz",
    ],
    capsys,
  )
  assert code == 2 and "damaged or incomplete checkpoint" in _one_line(err)
  assert not (tmp_path / "s.npz").exists()


def _sd(num_heads=2, seed=3):
  kw = dict(image_size=40, patch_size=9, width=16, depth=2, num_heads=num_heads, mlp_dim=24)
  return kw, randomize_(ViTFIQAReference(**kw), seed=seed).state_dict()


def test_export_then_convert_round_trips_the_head_count(tmp_path, capsys):
  kw, sd = _sd(num_heads=4)
  torch.save(sd, tmp_path / "m.pt")
  convert_file(str(tmp_path / "m.pt"), str(tmp_path / "ckpt"), num_heads=4)
  assert _cli(["export", tmp_path / "ckpt", tmp_path / "back.pt"], capsys)[0] == 0
  info = json.loads((tmp_path / "back.pt.json").read_text())
  assert info["config"]["num_heads"] == 4
  assert _cli(["convert", tmp_path / "back.pt", tmp_path / "again"], capsys)[0] == 0
  again = exfiqa_jax.load(str(tmp_path / "again"))
  assert again.config.num_heads == 4 and again.config.image_size == 40
  first = exfiqa_jax.load(str(tmp_path / "ckpt"))
  x = preprocess(np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8), 40)
  np.testing.assert_array_equal(apply(*again[1:], x).exits, apply(*first[1:], x).exits)
  code, err = _cli(
    ["convert", tmp_path / "back.pt", tmp_path / "third", "--num-heads", "8"], capsys
  )
  assert code == 2 and "--num-heads 8 disagrees with" in _one_line(err)
  # Without the settings file the shapes cannot tell: refused unless given (issue 26).
  os.remove(tmp_path / "back.pt.json")
  with pytest.raises(ValueError, match="head count cannot be read from the weights"):
    convert_file(str(tmp_path / "back.pt"), str(tmp_path / "third"))
  assert not (tmp_path / "third").exists()
  third = convert_file(str(tmp_path / "back.pt"), str(tmp_path / "third"), num_heads=8)
  assert third.num_heads == 8


def test_export_and_convert_overwrite_rule(tmp_path, capsys):
  kw, sd = _sd()
  torch.save(sd, tmp_path / "m.pt")
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "thesis.tex").write_text("precious")
  code, err = _cli(
    ["convert", tmp_path / "m.pt", tmp_path / "mine", "--num-heads", "2", "--force"], capsys
  )
  assert code == 2 and "is not a checkpoint written by exfiqa" in _one_line(err)
  assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
  convert_file(str(tmp_path / "m.pt"), str(tmp_path / "ckpt"), num_heads=2)
  (tmp_path / "out.pt").write_text("keep")
  code, err = _cli(["export", tmp_path / "ckpt", tmp_path / "out.pt"], capsys)
  assert code == 2 and "out.pt exists; pass --force" in _one_line(err)
  assert (tmp_path / "out.pt").read_text() == "keep"
  assert _cli(["export", tmp_path / "ckpt", tmp_path / "out.pt", "--force"], capsys)[0] == 0
  assert set(torch.load(tmp_path / "out.pt", weights_only=True)) == set(sd)


def test_convert_refuses_nan_and_names_a_missing_key(tmp_path, capsys):
  kw, sd = _sd()
  bad = dict(sd)
  bad["blocks.1.mlp.fc2.weight"] = bad["blocks.1.mlp.fc2.weight"].clone()
  bad["blocks.1.mlp.fc2.weight"][0, 0] = float("nan")
  torch.save(bad, tmp_path / "nan.pt")
  code, err = _cli(["convert", tmp_path / "nan.pt", tmp_path / "c1", "--num-heads", "2"], capsys)
  assert code == 2 and "NaN or infinite weights in ['blocks.1.mlp.fc2.weight']" in _one_line(err)
  assert not (tmp_path / "c1").exists()
  torch.save({k: v for k, v in sd.items() if k != "blocks.0.attn.qkv.weight"}, tmp_path / "m.pt")
  with pytest.raises(ValueError, match=r"missing key 'blocks\.0\.attn\.qkv\.weight'"):
    convert_file(str(tmp_path / "m.pt"), str(tmp_path / "c2"), num_heads=2)


def test_attention_never_deletes_its_out_folder(setup, tmp_path, capsys):
  root, _ = setup
  (tmp_path / "faces").mkdir()
  imgs = faces(2, 9)
  Image.fromarray(imgs[0]).save(tmp_path / "faces" / "a.png")
  Image.fromarray(imgs[1]).save(tmp_path / "faces" / "a.jpg", format="PNG")  # a.jpg and a.png
  before = sorted(os.listdir(tmp_path / "faces"))
  for extra in ([], ["--force"]):
    args = ["attention", "--checkpoint", root / "ckpt", "--images", tmp_path / "faces"]
    code, err = _cli([*args, "--out", tmp_path / "faces", *extra], capsys)
    assert code == 2 and "faces" in _one_line(err)
    assert sorted(os.listdir(tmp_path / "faces")) == before
  args = ["attention", "--checkpoint", root / "ckpt", "--images", tmp_path / "faces"]
  assert _cli([*args, "--out", tmp_path / "att"], capsys)[0] == 0
  pngs = sorted(p for p in os.listdir(tmp_path / "att") if p.endswith(".png"))
  assert pngs == ["a.jpg.png", "a.png.png"]  # one map per image, none overwritten
  code, err = _cli([*args, "--out", tmp_path / "att"], capsys)
  assert code == 2 and "exists; pass --force" in err
  assert _cli([*args, "--out", tmp_path / "att", "--force"], capsys)[0] == 0


def test_evaluate_demo_and_sweep_keep_an_existing_report(setup, tmp_path, capsys):
  root, _ = setup
  (tmp_path / "files").mkdir()
  (tmp_path / "files" / "demo.bin").write_bytes(b"")
  (tmp_path / "o").mkdir()
  (tmp_path / "o" / "summary.md").write_text("earlier report")
  args = [
    "evaluate",
    "--config",
    "demo",
    f"checkpoint={root / 'ckpt'}",
    f"out_dir={tmp_path / 'o'}",
    f"datasets.demo.files={tmp_path / 'files'}",
    "report.exits=(2,)",  # the demo's exit 6 is not an exit of this depth-3 checkpoint
    "quality_methods={}",  # the demo's assessors were not written here
  ]
  code, err = _cli(args, capsys)
  assert code == 2 and "summary.md exists; pass --force" in _one_line(err)
  code, err = _cli(["demo", "--out", tmp_path / "o", "--quiet"], capsys)
  assert code == 2 and "summary.md exists; pass --force" in _one_line(err)
  assert (tmp_path / "o" / "summary.md").read_text() == "earlier report"
  rng = np.random.default_rng(0)
  np.savez(
    tmp_path / "in.npz",
    exit_scores=rng.random((4, 3)).astype(np.float32),
    a=np.array([0, 2]),
    b=np.array([1, 3]),
    labels=np.array([True, False]),
    comparison=np.array([0.5, 0.1]),
    cost=np.arange(1, 4.0),
  )
  (tmp_path / "s").mkdir()
  (tmp_path / "s" / "in.md").write_text("earlier sweep")
  code, err = _cli(["sweep", "--inputs", tmp_path / "in.npz", "--out", tmp_path / "s"], capsys)
  assert code == 2 and "in.md exists; pass --force" in _one_line(err)
  assert (tmp_path / "s" / "in.md").read_text() == "earlier sweep"


def test_inputs_files_with_float_indices_or_duplicate_ids_refused(tmp_path):
  from exfiqa_jax.metrics.inputs import PairInputs

  good = dict(
    exit_scores=np.ones((4, 3), np.float32),
    a=np.array([0, 2]),
    b=np.array([1, 3]),
    labels=np.array([True, False]),
    comparison=np.array([0.5, 0.1]),
    cost=np.arange(1, 4.0),
  )
  for change, message in [
    (dict(a=np.array([0.0, 2.7])), r"pair indices 'a' must be integers"),
    (dict(b=np.array([1, 9])), r"pair indices 'b' must lie in \[0, 4\)"),
    (dict(labels=np.array([7, 0])), r"labels must be \[P\] booleans or 0/1"),
    (dict(exit_scores=np.full((4, 3), np.nan, np.float32)), r"NaN or infinite"),
  ]:
    np.savez(tmp_path / "x.npz", **{**good, **change})
    with pytest.raises(ValueError, match=message):
      PairInputs.load(str(tmp_path / "x.npz"))
  np.savez(
    tmp_path / "s.npz", paths=np.array(["a", "b", "a"]), exit_scores=np.ones((3, 3), np.float32)
  )
  (tmp_path / "p.txt").write_text("a b 1 0.5\n")
  with pytest.raises(ValueError, match=r"s\.npz: id 'a' appears twice"):
    PairInputs.from_score_file(str(tmp_path / "s.npz"), str(tmp_path / "p.txt"), np.ones(3))


def _proc(code: str, *args, env=None):
  return subprocess.Popen(
    [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
    env={**ENV, **(env or {})},
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def test_help_imports_no_jax_and_shows_defaults():
  r = subprocess.run(
    [
      sys.executable,
      "-c",
      "import pkgutil, sys\nimport exfiqa_jax.cli as cli\n"
      "names = sorted(m.name for m in pkgutil.iter_modules(cli.__path__) if m.name[0] != '_')\n"
      "for c in names:\n"
      "  try: cli.main([c, '--help'])\n"
      "  except SystemExit: pass\n"
      "print(','.join(names), 'JAX' if 'jax' in sys.modules else 'NOJAX')",
    ],
    env=ENV,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert r.stdout.strip().endswith("NOJAX"), r.stderr
  every = "adaptive,attention,convert,demo,embed,evaluate,export,info,score,sweep"
  assert r.stdout.strip().splitlines()[-1].split()[0] == every
  assert "(default: 32)" in r.stdout and "(default: out/demo)" in r.stdout
  v = subprocess.run([*EXE, "--version"], env=ENV, capture_output=True, text=True, timeout=60)
  assert v.returncode == 0 and v.stdout.startswith("exfiqa ")


def test_closed_pipe_and_ctrl_c_give_no_traceback(setup, tmp_path):
  r = subprocess.run(
    " ".join(EXE) + " info | true; echo status ${PIPESTATUS[0]}",
    shell=True,
    executable="/bin/bash",
    env=ENV,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert r.stderr == "" and "status 141" in r.stdout, r.stderr
  root, _ = setup
  (tmp_path / "many").mkdir()
  for i in range(400):
    os.link(root / "imgs" / "f0.png", tmp_path / "many" / f"{i:03d}.png")
  p = subprocess.Popen(
    [
      *EXE,
      "score",
      "--checkpoint",
      root / "ckpt",
      "--images",
      tmp_path / "many",
      "--out",
      tmp_path / "s.npz",
      "--batch-size",
      "1",
    ],
    env=ENV,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  seen = ""
  while "scoring" not in seen:  # interrupt once scoring has started, however fast it runs
    ch = p.stderr.read(1)
    if not ch:
      break
    seen += ch
  p.send_signal(signal.SIGINT)
  out, err = p.communicate(timeout=120)
  err = seen + err
  assert p.returncode == 130, err[-2000:]
  progress = re.compile(r"scoring(:.*)?")  # the progress bar's lines
  lines = [x for x in err.replace("\r", "\n").splitlines() if x.strip()]
  lines = [x for x in lines if not progress.fullmatch(x)]
  assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err, err
  assert not (tmp_path / "s.npz").exists()


def test_write_failure_is_one_line_and_leaves_no_temporary(setup, tmp_path):
  """A write the OS refuses (here a file-size limit: the same OSError path as a full disk)."""
  root, _ = setup
  p = _proc(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    from exfiqa_jax.cli import main
    import exfiqa_jax.scoring.score
    resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
    sys.exit(main(sys.argv[1:]))
    """,
    *_score_args(root, tmp_path / "s.npz", "--quiet"),
  )
  out, err = p.communicate(timeout=300)
  assert p.returncode == 2, err[-2000:]
  assert "exfiqa score: error:" in _one_line(err) and "too large" in err.lower()
  assert os.listdir(tmp_path) == []


KILL = """
import os, signal, sys
real = {{"replace": os.replace, "rename": os.rename}}
def dying(name):
  def fn(src, dst, *a, **k):
    if str(dst).endswith(sys.argv[1]):
      os.kill(os.getpid(), signal.SIGKILL)
    return real[name](src, dst, *a, **k)
  return fn
os.replace, os.rename = dying("replace"), dying("rename")
{body}
"""


def test_kill_at_the_merge_then_rerun_equals_one_run(setup, tmp_path):
  root, _ = setup
  body = """
from exfiqa_jax.cli import main
sys.exit(main(sys.argv[2:]))
"""
  args = _score_args(
    root, tmp_path / "s.npz", "--quiet", "--work-dir", tmp_path / "w", "--batch-size", "2"
  )
  p = _proc(KILL.format(body=body), "scores.npz", *args)
  p.communicate(timeout=300)
  assert p.returncode == -9
  assert any(n.startswith(".scores.npz.tmp-") for n in os.listdir(tmp_path / "w"))
  r = subprocess.run([*EXE, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  assert sorted(os.listdir(tmp_path / "w")) == ["chunk-000000.npz", "run.json", "scores.npz"]
  whole = tmp_path / "whole.npz"
  r = subprocess.run(
    [*EXE, *map(str, _score_args(root, whole, "--quiet", "--batch-size", "2"))],
    env=ENV,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr
  a, b = np.load(tmp_path / "s.npz"), np.load(whole)
  for k in ("paths", "exit_scores", "embeddings"):
    np.testing.assert_array_equal(a[k], b[k])


def test_two_runs_on_one_work_dir_do_not_mix(setup, tmp_path, capsys):
  root, variables = setup
  exfiqa_jax.save(str(tmp_path / "other"), TINY, *random_variables(seed=8)[1:])
  (tmp_path / "many").mkdir()
  for i in range(600):
    os.link(root / "imgs" / f"f{i % 6}.png", tmp_path / "many" / f"{i:03d}.png")
  work = tmp_path / "w"

  def args(ckpt, out):
    return [
      "score", "--checkpoint", ckpt, "--images", tmp_path / "many", "--out", out,
      "--work-dir", work, "--batch-size", "1", "--quiet",
    ]  # fmt: skip

  first = subprocess.Popen(
    [*EXE, *map(str, args(root / "ckpt", tmp_path / "a.npz"))],
    env=ENV,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 120
  while not list(work.glob("chunk-*.npz")) and time.time() < deadline:
    time.sleep(0.05)  # the first run is scoring
  # Held still while the second run starts, so that it still holds its lock however fast
  # it would otherwise finish (on a loaded machine the second's start-up can outlast it).
  assert first.poll() is None, "the first run ended before the second could start"
  first.send_signal(signal.SIGSTOP)
  try:
    code, err = _cli(args(tmp_path / "other", tmp_path / "b.npz"), capsys)
  finally:
    first.send_signal(signal.SIGCONT)
  _, err1 = first.communicate(timeout=300)
  assert first.returncode == 0, err1
  assert code == 2 and "another exfiqa process is using this folder" in _one_line(err), err
  assert not (tmp_path / "b.npz").exists()
  z = np.load(tmp_path / "a.npz")
  ref = apply(*variables, preprocess(faces(6, 5)))
  np.testing.assert_allclose(z["exit_scores"], np.asarray(ref.exits)[np.arange(600) % 6], atol=1e-5)
  # Afterwards the other model on the same folder: refused, or replaced with --force.
  code, err = _cli(args(tmp_path / "other", tmp_path / "b.npz"), capsys)
  assert code == 2 and "holds another run" in err and "--force" in err


def test_truncated_or_empty_chunks_are_scored_again(tmp_path):
  from exfiqa_jax.data import ArraySource
  from exfiqa_jax.scoring.score import score

  variables = random_variables(seed=2)
  source = ArraySource(faces(20, 1), np.asarray([f"i{k}" for k in range(20)]))
  first = score(variables, source, str(tmp_path / "w"), batch_size=4, chunk_size=8, progress=False)
  c0, c1 = tmp_path / "w" / "chunk-000000.npz", tmp_path / "w" / "chunk-000001.npz"
  c0.write_bytes(b"")
  c1.write_bytes(c1.read_bytes()[:100])
  again = score(variables, source, str(tmp_path / "w"), batch_size=4, chunk_size=8, progress=False)
  np.testing.assert_array_equal(again.exit_scores, first.exit_scores)
  assert np.load(c0)["exit_scores"].shape == (8, TINY.depth)


def test_embedding_files_refuse_shared_stems_and_lying_headers(tmp_path):
  from exfiqa_jax.evaluation.comparison import load_embeddings

  (tmp_path / "emb").mkdir()
  np.save(tmp_path / "emb" / "a.npy", np.ones(4, np.float32))
  with pytest.raises(ValueError, match=r"'a\.jpg' and 'a\.png' share the stem 'a'"):
    load_embeddings(str(tmp_path / "emb"), np.array(["a.jpg", "a.png"]))
  with open(tmp_path / "m.npy", "wb") as f:  # a header claiming 2^40 floats, 16 bytes of data
    np.lib.format.write_array_header_1_0(
      f, {"descr": "<f4", "fortran_order": False, "shape": (1 << 20, 1 << 20)}
    )
    f.write(bytes(16))
  with pytest.raises(ValueError, match=r"m\.npy: header declares 4,398,046,511,104 bytes"):
    load_embeddings(str(tmp_path / "m.npy"), np.array(["x"]))


def _hostile_json(tmp_path, how: str) -> str:
  """A JSON input path that is a FIFO, a link to /dev/zero, or a file over 4 MiB."""
  path = str(tmp_path / f"hostile-{how}.json")
  if how == "fifo":
    os.mkfifo(path)
  elif how == "zero":
    os.symlink("/dev/zero", path)
  else:
    with open(path, "w") as f:
      f.write("[" + "0," * (2 << 20) + "0]")  # 4 MiB + 3 bytes of valid JSON
  return path


HOSTILE = {
  "fifo": r"not a regular file: a FIFO",
  "zero": r"not a regular file: a character device",
  "big": r"over (4|1) MiB \(",
}


@pytest.mark.parametrize("how", sorted(HOSTILE))
@pytest.mark.parametrize("where", ["policy", "checkpoint", "export"])
def test_json_inputs_are_bounded_regular_files(setup, tmp_path, where, how):
  """A policy file, a checkpoint's config and an export's settings file that are a FIFO,
  a /dev/zero link or too large: refused in one line naming the file, exit 2, at once
  (a real process: a read that blocks or streams runs into the timeout)."""
  import shutil

  root, _ = setup
  src = _hostile_json(tmp_path, how)
  if where == "policy":
    args = _score_args(root, tmp_path / "o.npz", "--policy", "delta", "--budget", "1")
    args += ["--policy-file", src]
    named = src
  elif where == "checkpoint":
    shutil.copytree(root / "ckpt", tmp_path / "ckpt")
    os.remove(tmp_path / "ckpt" / "config" / "metadata")
    os.rename(src, tmp_path / "ckpt" / "config" / "metadata")
    named = f"{tmp_path / 'ckpt'}: not an exfiqa checkpoint (config/metadata"
    args = ["score", "--checkpoint", tmp_path / "ckpt", "--images", root / "imgs"]
    args += ["--out", tmp_path / "o.npz"]
  else:
    torch.save(_sd()[1], tmp_path / "m.pt")
    named = str(tmp_path / "m.pt.json")
    os.rename(src, named)
    args = ["convert", tmp_path / "m.pt", tmp_path / "o"]
  r = subprocess.run([*EXE, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=120)
  assert r.returncode == 2, r.stderr
  line = _one_line(r.stderr)
  assert f"{named}: " in line or named in line and where == "checkpoint", line
  assert re.search(HOSTILE[how], line), line
  assert not (tmp_path / "o.npz").exists() and not (tmp_path / "o").exists()


def test_score_refuses_non_finite_exit_scores_in_one_line(setup, tmp_path):
  """A ViT checkpoint whose weights overflow (written directly): `score` exits 2 with one
  stderr line naming the array and an image, no output (a real process; before: exit 0)."""
  import jax

  root, variables = setup
  params = jax.tree.map(lambda a: a * 1e30, variables[1])
  exfiqa_jax.save(str(tmp_path / "ckpt"), TINY, params, variables[2])
  args = ["score", "--checkpoint", tmp_path / "ckpt", "--images", root / "imgs"]
  r = subprocess.run(
    [*EXE, *map(str, [*args, "--out", tmp_path / "s.npz", "--quiet"])],
    env=ENV,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == 2, r.stderr
  line = _one_line(r.stderr)
  assert re.search(
    r"the model's (exit_scores|embeddings) are NaN or infinite for 6 of 6 images "
    r"\(first: \S*f0\.png\)",
    line,
  ), line
  assert not (tmp_path / "s.npz").exists()
