"""The CPU sweep's worker processes (`exfiqa_jax.fusion.workers`): forked only before a
backend starts, the same tables and figures as the threads and inline calls."""

import json
import os
import subprocess
import sys
from concurrent.futures import Future

import jax
import pytest

from exfiqa_jax.cli import main
from exfiqa_jax.fusion import workers
from tests.fusion.test_sweep_cli import _files

LINUX = sys.platform.startswith("linux")

# In a fresh process (no backend yet): 2 workers and this process; a 12-exit pair set
# with ties swept through the workers, then again on threads after `stop`; one variant
# alone (one chunk: the others find none left); a rule while one worker sleeps (the
# rest take its chunks); a call runs in another process, which never imported JAX.
CHILD = """
import json, os, sys
import numpy as np
from exfiqa_jax.fusion import workers
started = workers.start(2)
from exfiqa_jax.fusion import chunks
from exfiqa_jax.fusion.sweep import subset_masks, sweep
from exfiqa_jax.metrics import make_pairset

rng = np.random.default_rng(3)
n, p = 300, 2000
exits = np.round(rng.normal(size=(n, 12)), 1).astype(np.float32)
a, b = rng.integers(0, n, (2, p))
gen = rng.random(p) < 0.4
scores = np.round(np.where(gen, 0.5, 0.0) + rng.normal(size=p) * 0.3, 2)
ps = make_pairset(exits, a, b, gen, scores, fmrs=(1e-2, 1e-3), limits=(0.2, 0.3))
calls = []
areas_later = workers.areas_later
def counted(*args):
  calls.append(len(args[2]))
  return areas_later(*args)
workers.areas_later = counted
masks = subset_masks(12)[::7]
on_workers = sweep(ps, norms=("none", "rank"), masks=masks)
one = chunks.score_variants(ps, masks[5:6], np.arange(1, 13)[None], "min")
# a worker busy elsewhere: the others and this process take its chunks (variant order kept)
from exfiqa_jax.fusion.engine import plan
from exfiqa_jax.fusion.sides import pair_sides
from exfiqa_jax.metrics.host_curves import cached_pairs
import time
ones = np.ones((len(masks), 12))
sides = pair_sides(ps, plan(ps, "none", "max", ones, host=True), "max")
busy = workers.call(time.sleep, 1.0)
uneven = workers.areas(cached_pairs(ps)[0], sides, masks)
busy.result()
other = workers.call(os.getpid).result()
workers.call(exec, "import sys; assert 'jax' not in sys.modules").result()  # numpy only
workers.stop()
on_threads = sweep(ps, norms=("none", "rank"), masks=masks)
alone = chunks.score_variants(ps, masks[5:6], np.arange(1, 13)[None], "min")
threads_max = chunks.score_variants(ps, masks, ones, "max")
same = all(
  np.array_equal(np.asarray(on_workers[k]), np.asarray(on_threads[k]),
                 equal_nan=on_workers[k].dtype.kind == "f")
  for k in on_threads
)
print(json.dumps({
  "started": started, "calls": calls, "rows": len(on_threads["subset"]), "same": same,
  "one": all(np.array_equal(x, y, equal_nan=True) for x, y in zip(one, alone)),
  "uneven": all(np.array_equal(x, y, equal_nan=True) for x, y in zip(uneven, threads_max)),
  "other_pid": other != os.getpid(), "after_stop": workers.running(),
}))
"""


@pytest.mark.skipif(not LINUX, reason="the workers are forked on Linux only")
def test_workers_give_the_threads_table_bit_for_bit():
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run(
    [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, env=env
  )
  assert out.returncode == 0, out.stderr[-3000:]
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got["started"] == 2 and got["after_stop"] == 0 and got["other_pid"]
  n = len(range(0, 4095, 7))
  assert got["calls"] == [n] * 10 + [1, n]  # every rule x norm, one variant, uneven workers
  assert got["rows"] == n * 10
  assert got["same"] and got["one"] and got["uneven"]


def test_no_workers_once_a_backend_runs_and_calls_run_inline():
  jax.devices()  # this process's backend runs: a fork now could deadlock its child
  assert workers.start(1) == 0 and workers.running() == 0
  done = workers.call(divmod, 17, 5)
  assert isinstance(done, Future) and done.result() == (3, 2)
  failed = workers.call(int, "x")
  with pytest.raises(ValueError, match="invalid literal"):
    failed.result()
  # a rule's areas without workers: every chunk here, those of one host_areas call
  import numpy as np

  from exfiqa_jax.fusion.engine import plan
  from exfiqa_jax.fusion.sides import pair_sides, side_keys
  from exfiqa_jax.fusion.subsets import subset_masks
  from exfiqa_jax.metrics import make_pairset
  from exfiqa_jax.metrics.host import host_areas
  from exfiqa_jax.metrics.host_curves import cached_pairs

  rng = np.random.default_rng(4)
  exits = rng.normal(size=(60, 8)).astype(np.float32)
  a, b = rng.integers(0, 60, (2, 300))
  gen = rng.random(300) < 0.4
  ps = make_pairset(exits, a, b, gen, rng.normal(size=300) + gen, fmrs=(1e-2,), limits=(0.3,))
  masks = subset_masks(8)  # 255 variants: four chunks
  sides = pair_sides(ps, plan(ps, "none", "min", np.ones((len(masks), 8)), host=True), "min")
  hp = cached_pairs(ps)[0]
  want = host_areas(hp, side_keys(sides, masks))
  for x, y in zip(workers.areas(hp, sides, masks), want, strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
  "platforms, cpu",
  [("cpu", True), ("CPU", True), ("cuda", False), ("tpu", False), ("cpu,cuda", False)],
)
def test_workers_only_where_the_cpu_is_the_backend(monkeypatch, platforms, cpu):
  monkeypatch.setenv("JAX_PLATFORMS", platforms)
  assert workers.cpu_backend() is cpu


@pytest.mark.skipif(not LINUX, reason="the workers are forked on Linux only")
def test_sweep_command_with_workers_writes_the_files_of_one_without(tmp_path):
  """`exfiqa sweep` as its own process (workers forked: subset areas and figures there)
  and in this process (a backend runs: threads, figures inline): the same tables, JSON,
  Markdown and PNG files byte for byte."""
  _files(tmp_path)
  args = ["sweep", "--quiet", "--scores", str(tmp_path / "sc.npz"), "--pairs"]
  args += [str(tmp_path / "pairs.txt"), "--depth-cost"]
  opts = ["weights.simplex=3", "weights.learn_steps=3"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  run = (
    "import sys; from exfiqa_jax.cli import main; from exfiqa_jax.fusion import workers; "
    "code = main(sys.argv[1:]); print('workers', workers.running()); sys.exit(code)"
  )
  cmd = [sys.executable, "-c", run, *args, "--out", str(tmp_path / "w"), *opts, "--workers", "1"]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().splitlines()[-1] == "workers 1"  # the command forked one
  assert main([*args, "--out", str(tmp_path / "t"), *opts]) == 0
  names = sorted(os.listdir(tmp_path / "t"))
  assert sorted(os.listdir(tmp_path / "w")) == names
  assert {"sc_pareto.png", "sc_pairs.png", "sc_subsets.csv", "sc.md"} <= set(names)
  for name in names:
    if name.endswith(".svg"):  # SVG element ids vary from run to run
      continue
    assert (tmp_path / "w" / name).read_bytes() == (tmp_path / "t" / name).read_bytes(), name


@pytest.mark.parametrize(
  "extra, message",
  [
    (["--workers", "-1"], "--workers -1: give 0 or more"),
    (["--workers", "2", "--distributed"], "--workers goes without --distributed"),
  ],
)
def test_bad_worker_counts_are_refused_in_one_line(tmp_path, capsys, extra, message):
  _files(tmp_path)
  args = ["sweep", "--quiet", "--scores", str(tmp_path / "sc.npz"), "--pairs"]
  args += [str(tmp_path / "pairs.txt"), "--depth-cost", "--out", str(tmp_path / "o"), *extra]
  assert main(args) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(f"exfiqa sweep: error: {message}")
  assert not (tmp_path / "o").exists()


def _children(pid: int) -> list[int]:
  with open(f"/proc/{pid}/task/{pid}/children") as f:
    return [int(x) for x in f.read().split()]


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(") ")[1][0] != "Z"  # a zombie has exited
  except FileNotFoundError:
    return False


@pytest.mark.skipif(not LINUX, reason="the workers are forked on Linux only")
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_a_stopped_sweep_leaves_no_worker_and_no_traceback(tmp_path, signal_name):
  """Ctrl-C (SIGINT to the process group, as a terminal sends it) mid-sweep: exit 130,
  one line, no traceback of any worker, no worker left; SIGKILL of the command alone:
  its workers die with it."""
  import signal
  import time

  _files(tmp_path, n=3000, p=6000, depth=12)
  cmd = [sys.executable, "-m", "exfiqa_jax.cli", "sweep", "--scores", str(tmp_path / "sc.npz")]
  cmd += ["--pairs", str(tmp_path / "pairs.txt"), "--depth-cost", "--out", str(tmp_path / "o")]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(
    cmd + ["--quiet"], stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
  )
  deadline = time.monotonic() + 60
  while not _children(proc.pid) and time.monotonic() < deadline:
    time.sleep(0.05)
  kids = _children(proc.pid)
  assert kids, "no worker was forked"
  time.sleep(1.5)  # importing or sweeping
  assert proc.poll() is None, "the sweep ended before the signal"
  if signal_name == "SIGINT":
    os.killpg(proc.pid, signal.SIGINT)
  else:
    os.kill(proc.pid, signal.SIGKILL)
  _, err = proc.communicate(timeout=60)
  deadline = time.monotonic() + 10
  while any(_alive(k) for k in kids) and time.monotonic() < deadline:
    time.sleep(0.05)
  assert not any(_alive(k) for k in kids)
  if signal_name == "SIGINT":
    assert proc.returncode == 130
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
      "exfiqa sweep: interrupted"
    ), err[-2000:]
  else:
    assert proc.returncode == -signal.SIGKILL
  assert not (tmp_path / "o" / "sc.md").exists()


def test_a_finished_sweep_exits_quickly_with_its_exit_handlers_run(tmp_path):
  """`exfiqa sweep` (QUICK_EXIT) leaves without the interpreter's teardown after a
  success: its output flushed, the exit handlers run (one registered by the caller
  writes a file), status 0; a failure exits as usual."""
  _files(tmp_path)
  marker = tmp_path / "exit-handlers-ran"
  run = (
    "import atexit, sys; marker = sys.argv.pop(); "
    "atexit.register(lambda: open(marker, 'w').write('ran')); "
    "from exfiqa_jax.cli import entry; entry()"
  )
  args = ["sweep", "--scores", str(tmp_path / "sc.npz"), "--pairs", str(tmp_path / "pairs.txt")]
  args += ["--depth-cost", "--quiet", "weights.simplex=2", "weights.learn_steps=2"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  for out_dir, code in (("o", 0), ("o", 2)):  # the second: the output exists, no --force
    cmd = [sys.executable, "-c", run, *args, "--out", str(tmp_path / out_dir), str(marker)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == code, out.stderr[-2000:]
    assert marker.read_text() == "ran"
    marker.unlink()
    if code == 0:
      assert out.stdout.strip().splitlines()[-1] == f"wrote {tmp_path / 'o' / 'sc'}.md"
    else:
      assert out.stderr.strip().splitlines()[-1].startswith("exfiqa sweep: error:")
