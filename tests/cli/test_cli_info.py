import pytest

from exfiqa_jax.cli import main


def _hand_block_flops(t, d, m):
  # qkv 3d^2, q.k^T t*d, attn.v t*d, proj d^2, MLP 2dm per token; x2 FLOP per MAC.
  return 2 * (t * 3 * d * d + t * t * d + t * t * d + t * d * d + t * 2 * d * m)


@pytest.mark.parametrize(
  "name,depth,params", [("vit_s", 12, 76_025_344), ("vit_s_depth24", 24, 113_835_520)]
)
def test_info_prints_params_and_every_exit(name, depth, params, capsys):
  assert main(["info", "--config", name]) == 0
  out = capsys.readouterr().out
  # Parameter count by hand: embed + tokens + blocks + norm + heads.
  d, m, n = 512, 2048, 144
  block = 2 * 2 * d + 3 * d * d + d * d + d + d * m + m + m * d + d
  by_hand = (
    d * 243
    + d
    + d
    + (n + 1) * d
    + depth * block
    + 2 * d
    + n * d * d
    + 2 * d
    + d * d
    + 2 * d
    + 2 * d
    + d
  )
  assert by_hand == params
  assert f"parameters: {params:,}" in out
  rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
  assert len(rows) == depth
  gf = (2 * n * 243 * d + depth * _hand_block_flops(n + 1, d, m) + 2 * d) / 1e9
  assert rows[-1].split("|")[3].strip() == f"{gf:.3f}"


def test_unknown_config_is_an_error(capsys):
  assert main(["info", "--config", "nope"]) == 2
  assert "config 'nope': no such file" in capsys.readouterr().err
