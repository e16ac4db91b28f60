"""Optional reading: how the generator's two decoding functions are compiled on each Keras backend.

The lesson's `CachedGenerator` (core/generation.py) only needs "a compiled version of this function";
this module is the per-backend answer, kept apart so the generation loop reads like the lecture's.
"""

from __future__ import annotations

from typing import Callable

import keras


def compile_decoding(function: Callable, model: keras.Model) -> Callable:
    """Compiles a decoding function for the active backend, reading the model's current weights.

    TensorFlow reads variables live inside `tf.function`; the function is XLA-compiled and its concrete
    function called directly per input shape, which skips `tf.function`'s dispatch (a noticeable share of
    a step this small). JAX bakes arrays into a trace, so the function takes the variable values as an
    argument under a `StatelessScope` (a retrained model stays fresh). Other backends run it eagerly.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        traced = tf.function(function, jit_compile=True)
        concrete = {}

        def call(*args):
            args = tf.nest.map_structure(tf.convert_to_tensor, args)
            key = tuple(tuple(tensor.shape) for tensor in tf.nest.flatten(args))
            if key not in concrete:
                concrete[key] = traced.get_concrete_function(*args)
            return concrete[key](*args)

        return call
    if backend == "jax":
        import jax

        variables = model.variables

        def stateless(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return function(*args)

        jitted = jax.jit(stateless)
        return lambda *args: jitted([variable.value for variable in variables], *args)
    return function
