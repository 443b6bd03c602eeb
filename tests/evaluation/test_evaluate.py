"""The evaluation job end to end: the demo, `evaluate`, `sweep`, their reports and errors."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from exfiqa_jax.cli import main
from exfiqa_jax.evaluation.analysis import pairset
from exfiqa_jax.fusion.engine import evaluate_variant
from exfiqa_jax.metrics.inputs import PairInputs
from exfiqa_jax.scoring.run_folder import read_npz
from tests.report.browser import open_page

PAIRS = 80


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  out = tmp_path_factory.mktemp("demo")
  assert main(["demo", "--out", str(out), "--pairs", str(PAIRS), "--quiet"]) == 0
  return out


def _csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _mask(exits, depth=12):
  return [i + 1 in exits for i in range(depth)]


def test_demo_writes_report_plots_and_says_what_it_ran_on(demo):
  summary = (demo / "summary.md").read_text()
  assert "a *generated* verification benchmark (80 pairs" in summary
  assert "*untrained* model" in summary
  assert "| weighted(all) | paper fusion |" in summary
  pngs = sorted((demo / "plots").glob("*.png")) + sorted((demo / "sweep").glob("*.png"))
  assert [p.name for p in pngs] == [
    "demo_edc.png",
    "demo_erc_fmr0.001.png",
    "demo_erc_fmr0.01.png",
    "demo_pairs.png",
    "demo_pareto.png",
    "demo_per_exit.png",
    "demo_self_pairs.png",
    "demo_self_pareto.png",
  ]
  for p in pngs:
    with Image.open(p) as im:
      assert im.format == "PNG" and im.size[0] > 100
    assert p.with_suffix(".svg").read_text().startswith("<?xml")
  assert (demo / "sweep" / "demo_self.md").read_text().startswith("# Fusion sweep: demo_self")
  assert "ERC at FMR 0.001 is not resolvable: 40 impostor comparisons" in summary
  assert "| exit 6 | 0.0" in summary and "rej. to halve FNMR@0.01" in summary
  for name in ("md", "csv", "tex"):
    assert (demo / f"cross_benchmark.{name}").stat().st_size > 100
  assert "## Cross-benchmark comparison" in summary


def test_demo_cross_benchmark_shows_every_assessor(demo):
  """The demo's assessors (random weights) each have a row in every cross-benchmark table
  and the report's variant table, right after the depth-weighted fusion."""
  from exfiqa_jax.configs import load_config_file

  names = list(load_config_file("demo")["quality_methods"])
  assert len(names) >= 2
  md = (demo / "cross_benchmark.md").read_text()
  tables = md.split("\n### ")[1:]
  assert tables
  for t in tables:
    rows = [line.split("|")[1].strip() for line in t.splitlines() if line.startswith("| ")]
    i = rows.index("depth-weighted (all exits)")
    assert rows[i + 1 : i + 1 + len(names)] == names
  cross = _csv(demo / "cross_benchmark.csv")
  for name in names:
    assert sum(r["assessor"] == name for r in cross) == len(tables)
    assert f"| {name} | assessor |" in (demo / "summary.md").read_text()
    assert (demo / "assessors").is_dir()


def test_demo_report_html_opens_from_disk(demo):
  for path, figures in ((demo / "report.html", 6), (demo / "sweep" / "demo_self.html", 2)):
    page = open_page(str(path))
    assert len(page["images"]) == figures
    assert all(done and width > 100 for _, done, width in page["images"])
    assert page["errors"] == []


def test_report_numbers_equal_library_calls(demo):
  z = read_npz(str(demo / "inputs" / "demo_self.npz"))
  assert z["exit_scores"].shape == (2 * PAIRS, 12) and len(z["a"]) == PAIRS
  ps = pairset(
    z["exit_scores"],
    z["a"],
    z["b"],
    z["labels"],
    z["comparison"],
    fmrs=(1e-2, 1e-3),
    edc_fmr=1e-2,
    edc_limits=(0.2, 0.3),
  )
  rows = {r["variant"]: r for r in _csv(demo / "results.csv")}
  for variant, exits, rule in [
    ("exit 1", [1], "mean"),
    ("exit 12", [12], "mean"),
    ("mean(all)", range(1, 13), "mean"),
    ("weighted(all)", range(1, 13), "weighted"),
  ]:
    want = evaluate_variant(ps, _mask(exits), rule)
    got = rows[variant]
    np.testing.assert_allclose(
      [float(got["erc_area@0.01"]), float(got["erc_area@0.001"])], want["erc_area"], atol=1e-7
    )
    np.testing.assert_allclose(
      [float(got["edc_area@0.2"]), float(got["edc_area@0.3"])], want["edc_area"], atol=1e-7
    )
  best = [r for r in rows.values() if r["kind"].startswith("best by")][0]
  exits = [int(e) for e in best["exits"].split()]
  want = evaluate_variant(ps, _mask(exits), best["rule"], best["norm"])
  np.testing.assert_allclose(float(best["edc_area@0.2"]), want["edc_area"][0], atol=1e-7)
  assert all(float(r["edc_area@0.2"]) >= float(best["edc_area@0.2"]) for r in rows.values())


def test_evaluate_with_overrides_reproduces_the_demo(demo, tmp_path, capsys):
  out = tmp_path / "again"
  args = [
    "evaluate",
    "--config",
    "demo",
    "--quiet",
    f"checkpoint={demo}/checkpoint",
    f"out_dir={out}",
    f"data_dir={demo}/tfds",
    f"datasets.demo.files={demo}/files",
    "sweep.top_k=1",
    "sweep.norms=('none',)",
  ]
  assert main(args + _assessor_checkpoints(demo)) == 0
  again = {r["variant"]: r for r in _csv(out / "results.csv")}
  first = {r["variant"]: r for r in _csv(demo / "results.csv")}
  assert [r["kind"] for r in again.values()].count("best by edc_area@0.2") == 1
  for v in ("exit 3", "weighted(all)"):
    assert again[v]["edc_area@0.2"] == first[v]["edc_area@0.2"]
  # the warnings of summary.md are printed too, naming the benchmark and FR model
  err = capsys.readouterr().err
  summary = (out / "summary.md").read_text()
  assert "warning: demo/self: ERC at FMR 0.01 is not resolvable: 40 impostor" in err
  printed = [ln.split(": ", 2)[2] for ln in err.splitlines() if ln.startswith("warning: demo/")]
  assert printed and all(f"**Warning:** {w}" in summary for w in printed)


def _assessor_checkpoints(demo) -> list[str]:
  """Overrides pointing the demo config's quality_methods at what the demo wrote."""
  from exfiqa_jax.configs import load_config_file

  out = []
  for name, spec in load_config_file("demo")["quality_methods"].items():
    if "checkpoint" in spec:
      where = os.path.basename(spec["checkpoint"])
      out.append(f"quality_methods.{name}.checkpoint={demo}/assessors/{where}")
  return out


def test_evaluate_bars_name_the_dataset_models_and_fr_model(demo, tmp_path, capsys):
  """Without --quiet every bar says what it counts (issue 26: one unlabelled bar, one
  `scoring:` bar and identical `sweep:` bars before)."""
  args = [
    "evaluate", "--config", "demo", f"checkpoint={demo}/checkpoint", f"out_dir={tmp_path}",
    f"data_dir={tmp_path}/tfds", f"datasets.demo.files={demo}/files", "sweep.top_k=1",
    "sweep.norms=('none',)", "sweep.rules=('mean',)",
  ]  # fmt: skip
  assert main(args + _assessor_checkpoints(demo)) == 0
  err = capsys.readouterr().err
  scoring = "scoring demo (ViT-FIQA, CR-FIQA, MagFace, SER-FIQ, GraFIQs): 100%"  # assessors too
  for label in ("building demo: 100%", scoring, "sweep demo/self: 100%"):
    assert label in err, label


def test_sweep_on_saved_inputs_and_on_score_files(demo, tmp_path):
  """`exfiqa sweep` as a fresh process, which keeps its compiled programs in the cache."""
  z = read_npz(str(demo / "inputs" / "demo_self.npz"))
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # store even quick compiles
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "exfiqa_jax.cli",
      "sweep",
      "--quiet",
      "--inputs",
      str(demo / "inputs" / "demo_self.npz"),
      "--out",
      str(tmp_path / "s"),
    ],
    env=env,
    capture_output=True,
    text=True,
  )
  assert run.returncode == 0, run.stderr
  assert os.listdir(tmp_path / "cache" / "exfiqa-jax" / "xla")
  table = _csv(tmp_path / "s" / "demo_self_subsets.csv")
  assert len(table) == 4095 * 5  # default sweep: no config, plain scores only
  # the metric settings saved with the inputs (the demo's), not the defaults
  ps = pairset(
    z["exit_scores"], z["a"], z["b"], z["labels"], z["comparison"], fmrs=(1e-2, 1e-3), edc_fmr=1e-2
  )
  row = next(r for r in table if r["variant"] == "median({2,5,9})")
  want = evaluate_variant(ps, _mask([2, 5, 9]), "median")
  np.testing.assert_allclose(
    [float(row["erc_area@0.01"]), float(row["erc_area@0.001"])], want["erc_area"], atol=1e-7
  )
  np.testing.assert_allclose(float(row["edc_area@0.2"]), want["edc_area"][0], atol=1e-7)
  job = {r["variant"]: r for r in _csv(demo / "results.csv")}
  sub = {r["variant"]: r for r in table if r["rule"] == "weighted" and r["norm"] == "none"}
  assert sub["weighted(all)"]["edc_area@0.2"] == job["weighted(all)"]["edc_area@0.2"]
  assert "warning: demo_self: ERC at FMR 0.01 is not resolvable: 40 impostor" in run.stderr
  assert "ERC at FMRs 0.01, 0.001 use the same threshold" in run.stderr
  md = (tmp_path / "s" / "demo_self.md").read_text()
  top = md.split("Top 10")[1].split("Power-law")[0]
  names = [
    ln.split(" | ")[0][2:] for ln in top.splitlines() if ln.startswith("| ") and "---" not in ln
  ][1:]
  assert len(names) == 10 and len(set(names)) == 10
  assert "erc_area@0.001 is NaN for" in md  # 80 pairs: said, and those rows rank last
  powers = [r["variant"] for r in _csv(tmp_path / "s" / "demo_self_power_law.csv")]
  assert powers == [f"weighted(all) w_i ~ i^{p}" for p in ("0", "0.5", "1", "2", "4")]
  # The same inputs from an `exfiqa score`-style file and a text pair list.
  ids = np.array([f"img{i}.png" for i in range(len(z["exit_scores"]))])
  np.savez(tmp_path / "scores.npz", paths=ids, exit_scores=z["exit_scores"])
  with open(tmp_path / "pairs.txt", "w") as f:
    for a, b, label, c in zip(z["a"], z["b"], z["labels"], z["comparison"], strict=True):
      f.write(f"{ids[a]} {ids[b]} {int(label)} {float(c)!r}\n")
  got = PairInputs.from_score_file(
    str(tmp_path / "scores.npz"), str(tmp_path / "pairs.txt"), z["cost"]
  )
  for k in ("exit_scores", "a", "b", "labels", "comparison", "cost"):
    np.testing.assert_array_equal(getattr(got, k), z[k])


def test_errors_name_the_file_or_key(demo, tmp_path, capsys):
  base = [
    "evaluate",
    "--config",
    "demo",
    f"checkpoint={demo}/checkpoint",
    f"out_dir={tmp_path}/o",
    f"data_dir={demo}/tfds",
    f"datasets.demo.files={demo}/files",
  ]
  cases = [
    (["checkpoint=nowhere/ckpt"], "checkpoint nowhere/ckpt does not exist"),
    (["datasets.demo.files=nowhere"], "datasets.demo needs nowhere/demo.bin, which does not"),
    (["fr_models=['ArcFace']"], "unknown FR model 'ArcFace' in fr_models"),
    (
      ["fr_models=['ArcFace']", "embeddings={'ArcFace': 'nowhere'}"],
      "embeddings of ArcFace for demo: nowhere/demo_ArcFace does not exist",
    ),
    (["datasets.demo.builder='face_images'"], "a plain image folder has no pairs"),
    (["nosuchkey=1"], "unknown key 'nosuchkey'"),
  ]
  for extra, msg in cases:
    assert main(base + extra) == 2
    assert msg in capsys.readouterr().err
  assert not (tmp_path / "o").exists()
  # Score and pair files that do not match.
  np.savez(
    tmp_path / "s.npz",
    paths=np.array(["a.png", "b.png"]),
    exit_scores=np.zeros((2, 12), np.float32),
  )
  (tmp_path / "p.txt").write_text("a.png b.png 1 0.5\na.png c.png 0 0.1\n")
  assert (
    main(
      [
        "sweep",
        "--scores",
        str(tmp_path / "s.npz"),
        "--pairs",
        str(tmp_path / "p.txt"),
        "--depth-cost",
        "--out",
        str(tmp_path / "x"),
      ]
    )
    == 2
  )
  assert "p.txt:2: pair names image 'c.png', which is not in the scores" in capsys.readouterr().err
  assert not (tmp_path / "x").exists()
