"""The sweep over 8 devices, and over two hosts joined by jax.distributed, gives the
table of one device, bit for bit."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A worker in a fresh interpreter: a sweep of every subset of 6 exits x 5 rules
# (and the float-weight path), its table saved as .npz by process 0.
WORKER = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    args = json.loads(sys.argv[1])
    if "process" in args:  # one host of a pod simulated on this machine
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
      jax.distributed.initialize(f"localhost:{args['port']}", num_processes=2,
                                 process_id=args["process"])
    from exfiqa_jax.fusion.sweep import sweep
    from exfiqa_jax.fusion.weights import simplex, sweep_weights
    from exfiqa_jax.metrics import make_pairset
    rng = np.random.default_rng(0)
    exits = rng.normal(size=(90, 6)).astype(np.float32)
    a, b = rng.integers(0, 90, (2, 300))
    labels = np.arange(300) % 2
    scores = np.round(rng.normal(size=300) + labels, 2)
    ps = make_pairset(exits, a, b, labels, scores, fmrs=(1e-2, 1e-1))
    for name, n in args["devices"].items():
      t = sweep(ps, norms=("none", "rank"), devices=jax.local_devices()[:n])
      w = sweep_weights(ps, simplex(6, 20), devices=jax.local_devices()[:n])
      if jax.process_index() == 0:
        np.savez(f"{args['dir']}/{name}.npz", **{k: np.asarray(v) for k, v in t.items()},
                 **{"w_" + k: np.asarray(v) for k, v in w.items()})
    print("devices", jax.device_count(), "local", jax.local_device_count())
""")


def _start(tmp_path, env=None, **args):
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
  return subprocess.Popen(
    [sys.executable, str(script), json.dumps({"dir": str(tmp_path), **args})],
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _tables_equal(x, y):
  assert sorted(x.files) == sorted(y.files)
  for k in x.files:
    np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_eight_devices_and_two_hosts_equal_one_device(tmp_path):
  eight = _start(
    tmp_path,
    {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
    devices={"one": 1, "eight": 8, "three": 3},
  )
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    port = sock.getsockname()[1]
  (tmp_path / "pod").mkdir()
  hosts = [_start(tmp_path / "pod", devices={"pod": 1}, process=i, port=port) for i in (0, 1)]
  logs = [p.communicate(timeout=300) for p in (eight, *hosts)]
  assert [p.returncode for p in (eight, *hosts)] == [0, 0, 0], "\n".join(e[-2000:] for _, e in logs)
  assert "devices 8 local 8" in logs[0][0]
  assert "devices 2 local 1" in logs[1][0]
  one = np.load(tmp_path / "one.npz")
  assert len(one["subset"]) == 63 * 5 * 2 and np.isfinite(one["edc_area@0.2"]).all()
  for other in ("eight", "three", "pod/pod"):
    _tables_equal(one, np.load(tmp_path / f"{other}.npz"))
  assert not (tmp_path / "pod" / "pod1.npz").exists()  # only host 0 writes
