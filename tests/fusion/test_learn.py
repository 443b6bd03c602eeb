"""The learned weights' optimiser: fusion.learn.adam_update against the reference
optimiser library's Adam (an independent implementation), bit for bit over many steps
of a real gradient, inside one compiled scan as learn._fit runs it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exfiqa_jax.fusion.learn import adam_update


def test_adam_update_equals_the_reference_adam_bit_for_bit():
  optax = pytest.importorskip("optax")
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(64, 7)).astype(np.float32))
  y = jnp.asarray(rng.normal(size=64).astype(np.float32))

  def loss(theta):  # a smooth loss whose gradient changes sign and scale along the way
    return jnp.sum(jnp.tanh(x @ jax.nn.softmax(theta) - y) ** 2) + 1e-3 * jnp.sum(theta**4)

  theta0 = jnp.asarray(rng.normal(size=7).astype(np.float32))
  steps, lr = 300, 0.05

  @jax.jit
  def reference(theta):
    opt = optax.adam(lr)

    def step(carry, _):
      theta, state = carry
      updates, state = opt.update(jax.grad(loss)(theta), state)
      return (optax.apply_updates(theta, updates), state), theta

    return jax.lax.scan(step, (theta, opt.init(theta)), None, steps)[1]

  @jax.jit
  def ours(theta):
    def step(carry, _):
      theta, mu, nu, count = carry
      update, mu, nu, count = adam_update(jax.grad(loss)(theta), mu, nu, count, lr)
      return (theta + update, mu, nu, count), theta

    zero = jnp.zeros_like(theta)
    return jax.lax.scan(step, (theta, zero, zero, jnp.zeros([], jnp.int32)), None, steps)[1]

  want, got = np.asarray(reference(theta0)), np.asarray(ours(theta0))
  assert np.abs(want[-1] - want[0]).max() > 0.1  # the parameters moved
  np.testing.assert_array_equal(got, want)  # every step, every bit
