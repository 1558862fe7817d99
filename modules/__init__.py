"""User code TFX loads into Transform, Trainer and Tuner.

Importing it changes nothing. Entry points call ``contracts.runtime.configure_tensorflow()``
before anything imports TensorFlow (Keras 2 on purpose: tensorflow-transform 1.16 only works with
it); the modules that import TensorFlow here call it too, as the first thing, so that a process
that loads them directly (a Beam worker, a test) gets the same Keras.
"""
