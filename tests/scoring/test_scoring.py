import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from exfiqa_jax import apply, preprocess
from exfiqa_jax.data import ArraySource, FileSource
from exfiqa_jax.scoring.score import Scores, score
from exfiqa_jax.scoring.sharding import chunk_bounds, gather_in_order, host_chunks, pad_rows
from tests.score_helpers import faces, random_variables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDS = np.asarray([f"img{i:02d}" for i in range(45)])
# A worker run in a fresh interpreter: scores 45 random faces with a tiny model.
WORKER = textwrap.dedent("""
    import json, os, signal, sys
    import jax, numpy as np
    from tests.score_helpers import faces, random_variables
    from exfiqa_jax.scoring import run_folder as resume
    from exfiqa_jax.data import ArraySource
    from exfiqa_jax.scoring.score import score
    args = json.loads(sys.argv[1])
    if "process" in args:  # one host of a pod simulated on this machine
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
      jax.distributed.initialize(f"localhost:{args['port']}", num_processes=2,
                                 process_id=args["process"])
    source = ArraySource(faces(45), np.asarray([f"img{i:02d}" for i in range(45)]))
    variables = random_variables(seed=3)
    write, written = resume.write_chunk, []
    def write_then_maybe_die(out_dir, k, arrays):
      write(out_dir, k, arrays)
      written.append(k)
      if len(written) == args.get("kill_after"):
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, as in a crash
    resume.write_chunk = write_then_maybe_die
    for name, (n, batch) in args.get("devices", {}).items():
      s = score(variables, source, batch_size=batch, devices=jax.devices()[:n], progress=False)
      np.save(os.path.join(args["dir"], name + ".npy"), s.exit_scores)
      np.save(os.path.join(args["dir"], name + "_emb.npy"), s.embeddings)
    if "out" in args:
      score(variables, source, args["out"], batch_size=args["batch"], chunk_size=16,
            progress=False)
      print("chunks written", written)
""")


def _start(tmp_path, env=None, **args):
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  args = {"dir": str(tmp_path), **args}
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_DEFAULT_MATMUL_PRECISION": "highest", **(env or {})}
  return subprocess.Popen(
    [sys.executable, str(script), json.dumps(args)],
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _worker(tmp_path, env=None, **args):
  proc = _start(tmp_path, env, **args)
  out, err = proc.communicate(timeout=300)
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _reference():
  """The model called once on all 45 faces, no pipeline."""
  out = apply(*random_variables(seed=3), preprocess(faces(45)))
  return faces(45), np.asarray(out.exits), np.asarray(out.embedding)


def test_eight_devices_equal_one_device(tmp_path):
  r = _worker(
    tmp_path,
    {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
    devices={"one": (1, 16), "eight": (8, 16), "one_by_2": (1, 2)},
  )
  assert r.returncode == 0, r.stderr[-2000:]

  def load(name):
    return (np.load(tmp_path / f"{name}.npy"), np.load(tmp_path / f"{name}_emb.npy"))

  (one, one_emb), (eight, eight_emb), (by2, by2_emb) = map(load, ["one", "eight", "one_by_2"])
  assert one.shape == (45, 3)  # 45 = 2 full batches of 16 and a padded one of 13
  # Same global batch of 16: the 8 devices run 2 rows each, so matmul shapes
  # (and float32 rounding) differ from one device running 16 rows.
  np.testing.assert_allclose(eight, one, atol=1e-6, rtol=1e-6)
  np.testing.assert_allclose(eight_emb, one_emb, atol=1e-6, rtol=1e-6)
  # Same rows per device (2): sharding itself changes nothing, bit for bit.
  np.testing.assert_array_equal(eight, by2)
  np.testing.assert_array_equal(eight_emb, by2_emb)
  _, exits, emb = _reference()
  np.testing.assert_allclose(one, exits, atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.load(tmp_path / "one_emb.npy"), emb, atol=1e-5, rtol=1e-5)


def _same_files(a, b):
  assert sorted(os.listdir(a)) == sorted(os.listdir(b))
  for name in os.listdir(a):
    assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_killed_and_resumed_or_two_hosts_equal_one_run_byte_for_byte(tmp_path):
  (tmp_path / "a").mkdir()
  whole = _worker(tmp_path / "a", batch=8, out=str(tmp_path / "whole"))  # 3 chunks of 16
  assert whole.returncode == 0, whole.stderr[-2000:]
  assert "chunks written [0, 1, 2]" in whole.stdout
  killed = _worker(tmp_path / "a", batch=8, out=str(tmp_path / "resumed"), kill_after=2)
  assert killed.returncode == -9
  assert sorted(os.listdir(tmp_path / "resumed")) == [
    "chunk-000000.npz",
    "chunk-000001.npz",
    "run.json",
  ]
  resumed = _worker(tmp_path / "a", batch=8, out=str(tmp_path / "resumed"))
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "chunks written [2]" in resumed.stdout  # only the missing chunk was scored
  _same_files(tmp_path / "whole", tmp_path / "resumed")
  # Two processes joined by jax.distributed on this machine, as two hosts of a pod.
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    port = sock.getsockname()[1]
  hosts = [
    _start(tmp_path / "a", batch=8, out=str(tmp_path / "pod"), process=i, port=port) for i in (0, 1)
  ]
  logs = [h.communicate(timeout=300) for h in hosts]
  assert [h.returncode for h in hosts] == [0, 0], logs[0][1][-2000:] + logs[1][1][-2000:]
  assert "chunks written [0, 2]" in logs[0][0]  # chunk k on host k % 2
  assert "chunks written [1]" in logs[1][0]
  _same_files(tmp_path / "whole", tmp_path / "pod")
  s = Scores.read(str(tmp_path / "whole" / "scores.npz"))
  _, exits, emb = _reference()
  assert s.ids.tolist() == [f"img{i:02d}" for i in range(45)]
  np.testing.assert_allclose(s.exit_scores, exits, atol=1e-5, rtol=0)
  np.testing.assert_allclose(s.embeddings, emb, atol=1e-5, rtol=1e-5)


def test_in_process_padding_and_run_mismatch(tmp_path):
  images, exits, emb = _reference()
  variables = random_variables(seed=3)
  source = ArraySource(images, IDS)
  s = score(
    variables,
    source,
    str(tmp_path / "run"),
    batch_size=4,
    chunk_size=8,
    embedding=False,
    num_layers=2,
    progress=False,
  )
  np.testing.assert_allclose(s.exit_scores, exits[:, :2], atol=1e-5, rtol=0)
  assert s.embeddings is None
  with pytest.raises(ValueError, match=r"another run \(differs in \['batch_size'\]\)"):
    score(
      variables,
      source,
      str(tmp_path / "run"),
      batch_size=8,
      chunk_size=8,
      embedding=False,
      num_layers=2,
      progress=False,
    )
  other = random_variables(seed=4)
  with pytest.raises(ValueError, match=r"differs in \['weights_sha256'\]"):
    score(
      other,
      source,
      str(tmp_path / "run"),
      batch_size=4,
      chunk_size=8,
      embedding=False,
      num_layers=2,
      progress=False,
    )
  with pytest.raises(ValueError, match="chunk_size 6 a multiple of batch_size"):
    score(variables, source, batch_size=4, chunk_size=6)


def test_unreadable_image_mid_run_names_it(tmp_path):
  paths = []
  for i in range(5):
    paths.append(str(tmp_path / f"{i}.png"))
    Image.fromarray(np.full((112, 112, 3), i, np.uint8)).save(paths[-1])
  open(paths[3], "wb").write(b"garbage")
  source = FileSource(paths, np.asarray([os.path.basename(p) for p in paths]))
  variables = random_variables(seed=3)
  with pytest.raises(ValueError, match=r"3\.png: cannot decode image"):
    score(variables, source, str(tmp_path / "out"), batch_size=2, progress=False)
  assert not (tmp_path / "out" / "scores.npz").exists()


@pytest.mark.parametrize("n,chunk,hosts", [(45, 16, 1), (45, 16, 2), (100, 7, 3), (5, 8, 4)])
def test_host_split_covers_every_image_once_and_gathers_in_order(n, chunk, hosts):
  values = np.arange(n) * 10.0
  bounds = chunk_bounds(n, chunk)
  assert bounds[0][0] == 0 and bounds[-1][1] == n
  assert all(b - a == chunk for a, b in bounds[:-1]) and 0 < bounds[-1][1] - bounds[-1][0] <= chunk
  owned = [host_chunks(len(bounds), h, hosts) for h in range(hosts)]
  assert sorted(k for ks in owned for k in ks) == list(range(len(bounds)))
  parts = {k: {"x": values[bounds[k][0] : bounds[k][1]]} for ks in reversed(owned) for k in ks}
  np.testing.assert_array_equal(gather_in_order(parts, len(bounds))["x"], values)
  del parts[len(bounds) - 1]
  with pytest.raises(
    ValueError, match=f"chunks \\[{len(bounds) - 1}\\] of {len(bounds)} are missing"
  ):
    gather_in_order(parts, len(bounds))


def test_pad_rows_and_bad_host():
  x = np.arange(6).reshape(3, 2)
  np.testing.assert_array_equal(pad_rows(x, 5), [[0, 1], [2, 3], [4, 5], [0, 0], [0, 0]])
  assert pad_rows(x, 3) is x
  with pytest.raises(ValueError, match=r"process_index 2 not in \[0, 2\)"):
    host_chunks(4, 2, 2)
