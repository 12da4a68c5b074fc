"""`moving_fashion`: two Fashion-MNIST items, one bouncing; the label is the moving one's class.

`render.py` draws the clips (numpy only), `builder.py` is the TFDS builder (TensorFlow).
"""
