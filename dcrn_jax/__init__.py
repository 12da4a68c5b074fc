"""dcrn_jax: deep convolutional-recurrent networks in JAX/Flax."""

from dcrn_jax.errors import UserError

__all__ = ["UserError"]
__version__ = "0.1.0"
