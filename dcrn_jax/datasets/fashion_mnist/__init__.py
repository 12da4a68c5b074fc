"""`fashion_mnist` offline: TFDS's dataset written from local idx files (`builder.py`, `idx.py`)."""
