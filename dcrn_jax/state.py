"""The TrainState pytree and its creation directly with its sharding."""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from dcrn_jax import parallel


class TrainState(struct.PyTreeNode):
  """Everything a train step reads and writes. Randomness is not stored: it derives from
  `config.seed` folded with `step`, so a resumed run draws the same keys."""

  step: jax.Array
  params: Any
  batch_stats: Any  # Batch-norm running statistics ({} when the model has none).
  opt_state: Any
  # Exponential moving average of `params` (optim.ema_decay > 0; {} when off), sharded like them.
  ema_params: Any
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  @property
  def variables(self) -> dict:
    return {"params": self.params, "batch_stats": self.batch_stats}

  @property
  def ema_variables(self) -> dict:
    """The averaged parameters with the live batch statistics (those are running averages
    already)."""
    return {"params": self.ema_params, "batch_stats": self.batch_stats}


def init_variables(model: nn.Module, input_shape: Sequence[int], rng: jax.Array) -> dict:
  """Model variables for examples of `input_shape` (no batch dim): params and batch_stats."""
  dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  variables = model.init({"params": rng}, dummy, train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def abstract_variables(model: nn.Module, input_shape: Sequence[int], sharding) -> dict:
  """The shapes and dtypes of init_variables' result, each carrying `sharding`: the target a
  checkpoint's model item is restored into (nothing is allocated)."""
  shapes = jax.eval_shape(functools.partial(init_variables, model, input_shape),
                          jax.random.key(0))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      shapes)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       input_shape: Sequence[int], rng: jax.Array, mesh: Mesh, *,
                       ema: bool = False):
  """Returns (state, state_sharding): parameters are created already replicated on `mesh`.

  ema: keep a moving average of the parameters, starting from their initial values.

  `jax.eval_shape` gives the structure without allocating anything, so the jitted init can
  place every leaf where it belongs straight away (no host copy, no later resharding).
  """

  def init(rng):
    variables = init_variables(model, input_shape, rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                      batch_stats=variables["batch_stats"],
                      opt_state=tx.init(variables["params"]),
                      ema_params=variables["params"] if ema else {}, apply_fn=model.apply, tx=tx)

  abstract = jax.eval_shape(init, rng)
  sharding = jax.tree.map(lambda _: parallel.replicated(mesh), abstract)
  sharding = sharding.replace(ema_params=sharding.params if ema else {})
  return jax.jit(init, out_shardings=sharding)(rng), sharding


def abstract_with_sharding(tree, sharding_tree):
  """ShapeDtypeStructs carrying shardings: the target a checkpoint is restored into."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, sharding_tree)
