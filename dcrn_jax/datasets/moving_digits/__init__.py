"""`moving_digits`: bouncing handwritten digits; the label is the direction of motion.

`render.py` draws the clips (numpy only), `builder.py` is the TFDS builder (TensorFlow).
"""
