"""dcrn_jax: deep convolutional-recurrent networks in JAX/Flax."""

from dcrn_jax.errors import UserError

__all__ = ["ForecastPredictor", "Predictor", "UserError"]
# Recorded in every config.json a run writes (upgrades.py); pyproject.toml reads it from here.
__version__ = "0.2.0"


def __getattr__(name):
  # `from dcrn_jax import Predictor` (or ForecastPredictor) imports JAX and Flax; `import dcrn_jax` alone does not.
  if name == "Predictor":
    from dcrn_jax.predict import Predictor  # pylint: disable=g-import-not-at-top
    return Predictor
  if name == "ForecastPredictor":
    from dcrn_jax.predict_forecast import ForecastPredictor  # pylint: disable=g-import-not-at-top
    return ForecastPredictor
  raise AttributeError(f"module 'dcrn_jax' has no attribute {name!r}")
