"""python -m dcrn_jax.predict --workdir=DIR PATH... [--step=N] [--output=FILE.jsonl]

Predicts the classes of video and image files with a trained workdir. PATH: video or image
files, or folders of them (searched recursively).

This file only starts the command line (dcrn_jax/predict_cli.py); the library
(dcrn_jax/predict/__init__.py, the Predictor) never imports its command line.
"""

from dcrn_jax import predict_cli

if __name__ == "__main__":
  predict_cli.run()
