"""models.conv (Conv, max_pool with CPU-fast gradients) against Flax's nn.Conv / nn.max_pool, and
dcrn_jax.host (allocator settings, XLA compile options)."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcrn_jax import host
from dcrn_jax.models import conv, encoders

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rand(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _loss(module):
  # A non-linear, position-dependent loss, so that every gradient entry is exercised.
  def f(params, x):
    y = module.apply(params, x)
    return jnp.sum(jnp.sin(y) * jnp.linspace(0.5, 1.5, y.size).reshape(y.shape))
  return f


@pytest.mark.parametrize("shape,features,kernel,strides,padding", [
    ((4, 12, 12, 5), 7, (3, 3), (1, 1), "SAME"),      # the encoder's blocks
    ((3, 17, 15, 3), 4, (3, 3), (2, 2), "SAME"),      # ConvLSTM stem: stride 2, odd sizes
    ((4, 16, 16, 1), 6, (4, 4), (4, 4), "SAME"),      # patchify stem (one matmul)
    ((4, 18, 14, 2), 6, (4, 4), (4, 4), "SAME"),      # kernel == stride but padding needed
    ((2, 9, 9, 40), 8, (3, 3), (1, 1), "SAME"),       # k*k*C > PATCHES_MAX: per-tap matmuls
    ((3, 10, 10, 2), 3, (2, 2), (1, 1), "SAME"),      # even kernel: asymmetric padding
    ((3, 10, 10, 2), 3, (3, 3), (1, 1), "VALID"),
    ((2, 8, 8, 3), 4, (3, 3), (1, 1), ((2, 0), (1, 1))),
])
def test_conv_matches_flax_conv_values_and_gradients(shape, features, kernel, strides, padding):
  x = _rand(shape)
  ours = conv.Conv(features, kernel, strides, padding)
  flax = nn.Conv(features, kernel, strides, padding)
  p_ours = ours.init(jax.random.key(1), x)
  p_flax = flax.init(jax.random.key(1), x)
  # Same parameter names, shapes and initial values: checkpoints load into either.
  jax.tree.map(np.testing.assert_array_equal, p_ours, p_flax)
  np.testing.assert_allclose(ours.apply(p_ours, x), flax.apply(p_flax, x), rtol=1e-5, atol=1e-5)
  g_ours = jax.jit(jax.grad(_loss(ours), argnums=(0, 1)))(p_ours, x)
  g_flax = jax.jit(jax.grad(_loss(flax), argnums=(0, 1)))(p_flax, x)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_flax)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * float(jnp.abs(b).max()))


def test_conv_accelerator_form_matches_flax_gradients(monkeypatch):
  # What GPUs/TPUs get (conv.cpu_forms() False): autodiff's weight-gradient convolution.
  monkeypatch.setattr(conv, "cpu_forms", lambda: False)
  x = _rand((3, 10, 10, 2))
  ours, flax = conv.Conv(3, (3, 3)), nn.Conv(3, (3, 3))
  params = flax.init(jax.random.key(1), x)
  g_ours = jax.jit(jax.grad(_loss(ours), argnums=(0, 1)))(params, x)
  g_flax = jax.jit(jax.grad(_loss(flax), argnums=(0, 1)))(params, x)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_flax)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * float(jnp.abs(b).max()))


def test_conv_weight_gradient_blocks_sum_to_the_whole():
  # A batch large enough to be split into several blocks for the weight gradient.
  x, dy = _rand((64, 16, 16, 16)), _rand((64, 16, 16, 8), 1)
  pads = ((1, 1), (1, 1))
  assert conv._num_blocks(64, 16 * 16 * 144 * 4) > 1  # pylint: disable=protected-access
  blocked = conv.weight_grad_blocked(x, dy, (3, 3), (1, 1), pads)
  whole = conv.weight_grad_taps(x, dy, (3, 3), (1, 1), pads).reshape(3, 3, 16, 8)
  np.testing.assert_allclose(blocked, whole, rtol=1e-4, atol=1e-3)


def test_conv_in_bfloat16_keeps_float32_params():
  x = _rand((2, 8, 8, 3))
  m = conv.Conv(4, (3, 3), dtype=jnp.bfloat16)
  params = m.init(jax.random.key(0), x)
  assert params["params"]["kernel"].dtype == jnp.float32
  assert m.apply(params, x).dtype == jnp.bfloat16
  g = jax.grad(lambda p: m.apply(p, x).astype(jnp.float32).sum())(params)
  assert g["params"]["kernel"].dtype == jnp.float32
  ref = nn.Conv(4, (3, 3)).apply(params, x)
  np.testing.assert_allclose(m.apply(params, x).astype(jnp.float32), ref, rtol=0.05, atol=0.05)


def test_conv_rejects_inputs_that_are_not_images():
  with pytest.raises(ValueError, match="N, H, W, C"):
    conv.Conv(4, (3, 3)).init(jax.random.key(0), jnp.zeros((2, 8, 8)))


@pytest.mark.parametrize("shape,window", [((3, 8, 8, 4), 2), ((3, 9, 7, 4), 2),
                                          ((2, 12, 12, 3), 3)])
def test_max_pool_matches_flax_values_and_gradients_including_ties(shape, window):
  x = jnp.maximum(_rand(shape), 0.0)  # many windows of equal zeros, as after a ReLU
  x = x.at[0, 0, 0, 0].set(5.0).at[0, 0, 1, 0].set(5.0)  # and a tie between positive values
  ours = conv.max_pool(x, window)
  ref = nn.max_pool(x, (window, window), strides=(window, window))
  np.testing.assert_array_equal(ours, ref)
  weights = jnp.linspace(-1.0, 2.0, ref.size).reshape(ref.shape)
  g_ours = jax.grad(lambda v: jnp.sum(conv.max_pool(v, window) * weights))(x)
  g_ref = jax.grad(lambda v: jnp.sum(
      nn.max_pool(v, (window, window), strides=(window, window)) * weights))(x)
  np.testing.assert_array_equal(g_ours, g_ref)  # the first maximum of a window takes it all


def test_image_encoder_gradients_equal_the_same_network_built_from_flax_layers():
  class FlaxEncoder(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
      del train
      x = nn.relu(nn.Conv(4, (2, 2), strides=(2, 2), name="stem")(x))
      x = nn.relu(nn.Conv(6, (3, 3), name="conv0_0")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
      return nn.relu(nn.Dense(5, name="embed")(x.reshape(x.shape[0], -1)))

  x = _rand((3, 16, 16, 1))
  ours = encoders.ImageEncoder(features=(4, 6), embed_dim=5, stem_stride=2)
  params = ours.init(jax.random.key(0), x, train=True)["params"]
  mapped = {"stem": params["stem"], "conv0_0": params["blocks"]["conv0_0"],
            "embed": params["embed"]}
  f_ours = lambda p: jnp.sum(jnp.sin(ours.apply({"params": p}, x, train=True)))
  f_flax = lambda p: jnp.sum(jnp.sin(FlaxEncoder().apply({"params": p}, x, train=True)))
  np.testing.assert_allclose(f_ours(params), f_flax(mapped), rtol=1e-5)
  g_ours, g_flax = jax.grad(f_ours)(params), jax.grad(f_flax)(mapped)
  g_ours = {"stem": g_ours["stem"], "conv0_0": g_ours["blocks"]["conv0_0"],
            "embed": g_ours["embed"]}
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_flax)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_compiler_options_on_cpu_turn_off_ynn_fusions_and_compile():
  options = host.compiler_options()
  assert options == host.CPU_COMPILER_OPTIONS  # this jaxlib accepts them on the CPU backend
  f = jax.jit(lambda a: jnp.tanh(a @ a), compiler_options=options)
  a = _rand((8, 8))
  np.testing.assert_allclose(f(a), jnp.tanh(a @ a), rtol=1e-5)


def _run_python(code, **env):
  full_env = dict(os.environ, **env)
  for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
    if name not in env:
      full_env.pop(name, None)
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env, check=True,
                        capture_output=True, text=True).stdout.split()


def test_host_settings_apply_by_default_and_can_be_turned_off():
  code = ("from dcrn_jax import host; print(host.tune_malloc(), "
          "bool(host.compiler_options()))")
  assert _run_python(code) == ["True", "True"]
  assert _run_python(code, DCRN_JAX_TUNE_MALLOC="0", DCRN_JAX_XLA_CPU_OPTIONS="0") == [
      "False", "False"]
  assert _run_python(code, MALLOC_TRIM_THRESHOLD_="1000000")[0] == "False"  # the user's choice


def test_configure_is_the_one_call_for_a_user_program():
  code = "from dcrn_jax import host; print(host.configure())"
  assert " ".join(_run_python(code)) == "{'tune_malloc': True, 'xla_flags': True}"
  assert " ".join(_run_python(code, DCRN_JAX_TUNE_MALLOC="0", DCRN_JAX_XLA_CPU_OPTIONS="0")) == (
      "{'tune_malloc': False, 'xla_flags': False}")


def test_configure_gives_a_users_own_jit_our_xla_options():
  # A plain jax.jit after configure() compiles without YNNPACK fusions, as our own steps do;
  # after JAX has started, XLA_FLAGS can no longer change and configure() says so.
  code = ("from dcrn_jax import host; applied = host.configure(); import jax, jax.numpy as jnp; "
          "from dcrn_jax.models import ConvLSTM; x = jnp.ones((2, 2, 32, 32, 3)); "
          "m = ConvLSTM(32); "
          "v = m.init(jax.random.key(0), x); "
          "text = jax.jit(jax.grad(lambda v: m.apply(v, x).sum())).lower(v).compile().as_text(); "
          "print(applied['xla_flags'], 'ynn_fusion' in text, host.configure()['xla_flags'])")
  assert _run_python(code) == ["True", "False", "False"]
  plain = code.replace("applied = host.configure()", "applied = {'xla_flags': None}")
  assert _run_python(plain)[:2] == ["None", "True"]  # XLA's defaults: YNNPACK takes the convs
