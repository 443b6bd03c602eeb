"""Outputs written as one unit (issue 27): a report or an adaptive study is staged and
swapped in (fileio.output_set), so a kill or a failure never leaves two runs mixed."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from exfiqa_jax.fileio import finish_output_set, output_set

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXE = [sys.executable, "-m", "exfiqa_jax.cli"]
ENV = {**os.environ, "PYTHONPATH": ROOT, "JAX_COMPILATION_CACHE_DIR": ""}

# runs `exfiqa ARGS...` and kills itself (SIGKILL; argv[2] "fail": raises OSError
# instead) when a file whose path ends with argv[1] is about to be moved into place
KILL = """
import os, signal, sys
real = {"replace": os.replace, "rename": os.rename}
def dying(name):
  def fn(src, dst, *a, **k):
    if str(dst).endswith(sys.argv[1]):
      if sys.argv[2] == "fail":
        raise OSError(28, "No space left on device")
      os.kill(os.getpid(), signal.SIGKILL)
    return real[name](src, dst, *a, **k)
  return fn
os.replace, os.rename = dying("replace"), dying("rename")
from exfiqa_jax.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _killed_at(suffix: str, *args, how: str = "kill") -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-c", textwrap.dedent(KILL), suffix, how, *map(str, args)],
    env=ENV,
    capture_output=True,
    text=True,
    timeout=600,
  )


def _exfiqa(*args) -> subprocess.CompletedProcess:
  return subprocess.run(
    [*EXE, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=600
  )


def _tree(root) -> dict[str, bytes]:
  out = {}
  for base, _, files in os.walk(root):
    for f in files:
      p = os.path.join(base, f)
      out[os.path.relpath(p, root)] = open(p, "rb").read()
  return out


def test_output_set_replaces_the_previous_set_and_keeps_unrelated_files(tmp_path):
  def write(files):
    with output_set(str(tmp_path), "report", last=("summary.md",)) as folder:
      for name, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        with open(os.path.join(folder, name), "w") as f:
          f.write(text)

  (tmp_path / "mine.txt").write_text("a user's file")
  write({"summary.md": "one", "tables/a.csv": "1", "plots/a.png": "1"})
  write({"summary.md": "two", "tables/b.csv": "2"})
  tree = _tree(tmp_path)
  manifest = json.loads(tree.pop(".exfiqa-report.json"))
  assert tree == {"summary.md": b"two", "tables/b.csv": b"2", "mine.txt": b"a user's file"}
  assert manifest == {"files": ["summary.md", "tables/b.csv"]}
  with pytest.raises(RuntimeError, match="half way"):  # a failure moves nothing
    with output_set(str(tmp_path), "report") as folder:
      (tmp_path / os.path.basename(folder) / "summary.md").write_text("three")
      raise RuntimeError("half way")
  assert _tree(tmp_path) == {**tree, ".exfiqa-report.json": json.dumps(manifest).encode()}


def test_a_hostile_manifest_removes_nothing_outside_its_folder(tmp_path):
  (tmp_path / "o").mkdir()
  (tmp_path / "keep.txt").write_text("outside")
  (tmp_path / "o" / ".exfiqa-report.json").write_text(
    json.dumps({"files": ["../keep.txt", str(tmp_path / "keep.txt"), "old.txt"]})
  )
  (tmp_path / "o" / "old.txt").write_text("old")
  with output_set(str(tmp_path / "o"), "report") as folder:
    open(os.path.join(folder, "new.txt"), "w").close()
  assert (tmp_path / "keep.txt").read_text() == "outside"
  assert sorted(os.listdir(tmp_path / "o")) == [".exfiqa-report.json", "new.txt"]
  assert not finish_output_set(str(tmp_path / "o"), "report")


def test_a_hostile_journal_removes_nothing_outside_its_folder(tmp_path):
  # a commit journal left in the folder is rolled forward by the next run: the files it
  # names for removal must lie under the folder, as the manifest's
  (tmp_path / "o").mkdir()
  (tmp_path / "keep.txt").write_text("outside")
  (tmp_path / "o" / "old.txt").write_text("old")
  (tmp_path / "o" / ".exfiqa-report.commit.json").write_text(
    json.dumps(
      {
        "staging": ".exfiqa-report-staging-x",
        "targets": {},
        "last": [],
        "remove": ["../keep.txt", str(tmp_path / "keep.txt"), "old.txt"],
        "kept": [],
      }
    )
  )
  assert finish_output_set(str(tmp_path / "o"), "report")
  assert (tmp_path / "keep.txt").read_text() == "outside"
  assert not (tmp_path / "o" / "old.txt").exists()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  out = tmp_path_factory.mktemp("demo")
  r = _exfiqa("demo", "--out", out, "--pairs", "40", "--quiet")
  assert r.returncode == 0, r.stderr[-3000:]
  return out


def test_evaluate_killed_between_summary_and_page_leaves_no_mix(demo):
  """kill -9 while the new report moves in: the next run finishes that report (never the
  new summary beside the old page), then keeps it (no --force)."""
  old_page = (demo / "report.html").read_text()
  assert "to discard 0.2, 0.3" in old_page
  job = [
    "evaluate", "--config", "demo", f"out_dir={demo}", f"checkpoint={demo / 'checkpoint'}",
    f"data_dir={demo / 'tfds'}", f"datasets.demo.files={demo / 'files'}",
    "metrics.edc_limits=(0.25,)", "sweep.rules=('mean',)", "quality_methods={}", "--quiet",
  ]  # fmt: skip
  r = _killed_at(f"{demo}/report.html", *job, "--force")  # the move, not the staging
  assert r.returncode == -9, r.stderr[-3000:]
  assert (
    not (demo / "summary.md").exists() or "discard 0.25" not in (demo / "summary.md").read_text()
  )
  r = _exfiqa(*job)  # no --force: finishes the killed run's report, then keeps it
  assert r.returncode == 2 and "summary.md exists; pass --force" in r.stderr, r.stderr[-3000:]
  summary, page = (demo / "summary.md").read_text(), (demo / "report.html").read_text()
  assert "to discard 0.25." in summary and "to discard 0.25." in page
  assert not [n for n in os.listdir(demo) if "staging" in n or n.endswith(".commit.json")]


def _adaptive_inputs(path):
  from tests.adaptive.test_adaptive_cli import _inputs

  _inputs(path)
  return path / "bench_self.npz"


def test_adaptive_kill_or_failure_leaves_one_split_seed(tmp_path):
  """policies.json moves in last with its tables (one unit): a kill before it is finished
  by the next run; a failed --force rerun changes nothing."""
  z = _adaptive_inputs(tmp_path)
  out, ckpt = tmp_path / "o", tmp_path / "ckpt"
  ckpt.mkdir()
  args = ["adaptive", "--quiet", "--inputs", z, "--out", out, "--stages", "2,4"]
  args += ["--knobs", "delta=0,0.5", "--policies", "delta"]
  r = _killed_at(f"{out}/bench_self_adaptive.md", *args)
  assert r.returncode == -9, r.stderr[-3000:]
  r = _exfiqa(*args)  # finishes the killed run's set, then keeps it (no --force)
  assert r.returncode == 2 and "exists; pass --force" in r.stderr, r.stderr[-3000:]
  names = sorted(n for n in os.listdir(out) if not n.startswith("."))
  ends = [".csv", ".json", ".md", "_pareto.png", "_pareto.svg"]
  assert names == sorted(["policies.json", *(f"bench_self_adaptive{e}" for e in ends)])

  def seeds():
    pol = json.loads((out / "policies.json").read_text())["split"]["seed"]
    return pol, json.loads((out / "bench_self_adaptive.json").read_text())["split"]["seed"]

  assert seeds() == (0, 0)
  before = _tree(out)
  for at in ("policies.json", "bench_self_adaptive.md"):  # fails half way: nothing changes
    r = _killed_at(at, *args, "--seed", "1", "--force", how="fail")
    assert r.returncode == 2 and "No space left" in r.stderr, r.stderr[-3000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _tree(out) == before and seeds() == (0, 0)
  r = _exfiqa(*args, "--seed", "1", "--force")
  assert r.returncode == 0, r.stderr[-3000:]
  assert seeds() == (1, 1)


def test_sweep_inputs_of_one_base_name_refused_in_one_line(tmp_path):
  from tests.adaptive.test_adaptive_cli import _inputs

  for d in ("A", "B"):
    (tmp_path / d).mkdir()
    _inputs(tmp_path / d)
  a, b = tmp_path / "A" / "bench_self.npz", tmp_path / "B" / "bench_self.npz"
  r = _exfiqa("sweep", "--inputs", a, b, "--out", tmp_path / "s", "--quiet")
  assert r.returncode == 2, r.stderr[-3000:]
  assert len(r.stderr.strip().splitlines()) == 1 and "share the name 'bench_self'" in r.stderr
  assert not (tmp_path / "s").exists()
