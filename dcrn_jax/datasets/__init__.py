"""Our offline dataset builders, one folder each; the runtime pipeline is in dcrn_jax/data.

  moving_digits/    TFDS builder of bouncing handwritten-digit clips, and its renderer
  moving_fashion/   TFDS builder of Moving Fashion-MNIST clips, and its renderer
  fashion_mnist/    TFDS's fashion_mnist written from local idx files, and the idx reader
  bouncing.py       what both clip renderers share: sprites bouncing inside a square frame
  local_builder.py  the mixin every builder here lists first (nothing is downloaded)

Each folder's `builder.py` imports TensorFlow (through dcrn_jax.data.tf_import, which hides the
accelerators from it); renderers and the idx reader are numpy only. Nothing here imports the
runtime pipeline: `dcrn_jax.data` finds these builders through its one table of sources.
"""
