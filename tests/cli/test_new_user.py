"""What a new user meets at the command line (issue 26): refusals up front in one line,
help that says what each flag is, messages that say where the output went."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def exfiqa(*args: str, cwd=None, timeout: int = 120) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "exfiqa_jax.cli", *args],
    cwd=cwd,
    capture_output=True,
    text=True,
    timeout=timeout,
    env={**os.environ, "PYTHONPATH": ROOT},
  )


def test_demo_refuses_too_few_pairs_before_any_work(tmp_path):
  """`exfiqa demo --pairs 5` failed after 27 s ("got 2 genuine and 0 impostor", while its
  file held 2 impostors); now it is refused at once, saying why, and writes nothing."""
  t0 = time.monotonic()
  r = exfiqa("demo", "--pairs", "5", "--out", str(tmp_path / "demo"))
  assert r.returncode == 2
  assert r.stderr.splitlines()[-1] == (
    "exfiqa demo: error: argument --pairs: the demo needs at least 20 pairs (its learned "
    "weights are fitted on half of them and tested on the other half, each with genuine "
    "and impostor pairs), got 5"
  )
  assert "Traceback" not in r.stderr
  assert not (tmp_path / "demo").exists()
  assert time.monotonic() - t0 < 60  # no generating, converting or scoring first


def test_convert_of_a_torchscript_file_is_one_line_without_a_torch_warning(tmp_path):
  torch = pytest.importorskip("torch")
  torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "ts.pt"))
  r = exfiqa("convert", str(tmp_path / "ts.pt"), str(tmp_path / "ckpt"), "--num-heads", "8")
  assert r.returncode == 2
  assert r.stderr.splitlines() == [
    f"exfiqa convert: error: {tmp_path / 'ts.pt'}: a TorchScript archive (torch.jit.save), "
    "not a checkpoint of weights; save the model's state_dict with "
    "torch.save(model.state_dict(), ...)"
  ]
  assert not (tmp_path / "ckpt").exists()


COMMANDS = ("adaptive", "attention", "convert", "demo", "embed", "evaluate", "export")
COMMANDS += ("info", "score", "sweep")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_empty_defaults_and_says_what_out_is(command, capsys):
  from exfiqa_jax.cli import main

  with pytest.raises(SystemExit) as e:
    main([command, "--help"])
  assert e.value.code == 0
  text = " ".join(capsys.readouterr().out.split())  # unwrapped
  assert "(default: None)" not in text and "(default: False)" not in text
  if "--out" in text:
    help_of_out = text.split("--out ", 2)[-1]
    assert "file" in help_of_out.split("--", 1)[0] or "folder" in help_of_out.split("--", 1)[0]


def test_a_mistyped_flag_prints_the_command_usage(capsys):
  from exfiqa_jax.cli import main

  with pytest.raises(SystemExit) as e:
    main(["score", "--checkpoint", "c", "--images", "i", "--out", "o.npz", "--batchsize", "3"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("usage: exfiqa score ")
  assert err.splitlines()[-1] == "exfiqa score: error: unrecognized arguments: --batchsize 3"


def test_distributed_on_one_machine_is_one_line(tmp_path):
  env_free = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "OMPI", "TPU"))}
  r = subprocess.run(
    [sys.executable, "-m", "exfiqa_jax.cli", "score", "--distributed", "--checkpoint", "c"]
    + ["--images", "i", "--out", str(tmp_path / "o.npz")],
    capture_output=True,
    text=True,
    timeout=120,
    env={**env_free, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"},
  )
  assert r.returncode == 2
  assert r.stderr.splitlines() == [
    "exfiqa score: error: --distributed found no multi-host cluster to join "
    "(jax.distributed.initialize: coordinator_address should be defined.); on one machine "
    "run without --distributed"
  ]


def test_a_config_without_get_config_is_one_line(tmp_path, capsys):
  from exfiqa_jax.cli import main

  bad = tmp_path / "my_job.py"
  bad.write_text("config = dict(out_dir='x')\n")
  assert main(["evaluate", "--config", str(bad)]) == 2
  assert capsys.readouterr().err.splitlines() == [
    f"exfiqa evaluate: error: {bad}: not a config: it defines no get_config() (a config "
    "file is Python with a get_config() that returns the settings as a dict; see "
    "configs/demo.py)"
  ]


@pytest.mark.parametrize("command", ["convert", "export"])
def test_convert_and_export_without_torch_are_one_line(command, tmp_path, monkeypatch, capsys):
  """Without the `convert` extra (the newest stack has no torch), `exfiqa convert` said
  "unexpected ModuleNotFoundError: No module named 'torch'"; now it names what to install,
  before any work, and writes nothing."""
  import importlib.util

  from exfiqa_jax.cli import main

  find = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find(name, *a)
  )
  (tmp_path / "src").write_bytes(b"not read")
  assert main([command, str(tmp_path / "src"), str(tmp_path / "dst")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "unexpected" not in err, err
  assert f"exfiqa {command}: error: {command} needs PyTorch, which is not installed" in err
  assert 'install the `convert` extra (pip install ".[convert]"' in err
  assert not (tmp_path / "dst").exists()
