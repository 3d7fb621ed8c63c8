"""Training speed-ups for the CIFAR networks, on the TensorFlow backend only.

The builders in `models` return plain Keras models; the training code
(`classification.task.build_model`) applies these when the run asks: the fused
BatchNorm kernel by default (`--nofused_bn` turns it off) and block
recomputation with `--recompute`. Both replace `call` methods on the built
model at run time and nothing else: layers, weights and saved files stay
plain Keras, and what is computed stays Keras' own arithmetic (tested equal
in tests/speedups_test.py; speed and memory in docs/performance.md).

    from resnet_keras.classification import models
    from resnet_keras.run import speedups
    model = models.build_resnet(3)
    speedups.fuse_batch_norm(model)  # 21: every BatchNorm layer
    speedups.recompute_blocks(model)  # 9: every residual block
"""

import itertools
import threading
import types

import keras
import tensorflow as tf
from keras import layers

from resnet_keras import keras_private


def fuse_batch_norm(model):
    """Runs the model's BatchNormalization layers through TensorFlow's fused kernel.

    Keras 3 computes batch normalisation as separate mean, variance and
    arithmetic ops; TensorFlow's FusedBatchNormV3 (oneDNN on the CPU, cuDNN on
    a GPU) does it in one pass each way, and trains faster
    (docs/performance.md). Only each layer's `call` is replaced: the layers
    stay `keras.layers.BatchNormalization`, so saved files hold plain Keras
    layers and load anywhere, and the arithmetic is Keras' own (same
    statistics, epsilon and moving-average update). Synchronized and masked
    layers keep Keras' path.

    Args:
        model: a built `keras.Model`; its layers are switched in place.

    Returns:
        The number of layers switched.
    """
    count = 0
    for layer in keras_private.all_layers(model):
        if (
            isinstance(layer, layers.BatchNormalization)
            and not layer.synchronized
            and not layer.renorm
            and layer.axis in (-1, 3)
        ):
            layer.call = types.MethodType(_fused_bn_call, layer)
            count += 1
    return count


def is_fused(layer):
    """True for a layer switched by `fuse_batch_norm`."""
    return getattr(layer.call, "__func__", None) is _fused_bn_call


def _fused_bn_call(self, inputs, training=None, mask=None):
    if mask is not None or len(inputs.shape) != 4:
        return type(self).call(self, inputs, training=training, mask=mask)
    # As Keras does: statistics in float32 whatever the compute dtype.
    x = tf.cast(inputs, "float32")
    channels = x.shape[-1]
    gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels])
    beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels])
    if training and self.trainable:
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, is_training=True
        )
        # Skipped while the backward pass re-runs a block (recompute_blocks):
        # the same batch statistics, and the averages already moved once.
        if not getattr(_RECOMPUTING, "active", False):
            # The kernel returns the unbiased (n - 1) variance; Keras moves its
            # averages with the biased one, and so do we.
            n = tf.cast(tf.size(x) // channels, "float32")
            variance = variance * (n - 1.0) / n
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
    else:
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x,
            gamma,
            beta,
            mean=self.moving_mean,
            variance=self.moving_variance,
            epsilon=self.epsilon,
            is_training=False,
        )
    return tf.cast(y, self.compute_dtype)


# Set while recompute_blocks' backward pass re-runs a block: BatchNorm must not
# move its averages a second time. Per thread, as replicas trace in threads.
_RECOMPUTING = threading.local()


def recompute_blocks(model):
    """Trains `model` keeping only each residual block's input for the backward
    pass; the block's inner activations are computed again there.

    This trades speed for memory: one more forward pass per step, and the
    stored activations shrink to one tensor per block (docs/performance.md).
    Only the model's `call` is replaced, at run time: its layers, weights and
    saved files are unchanged. What is computed is unchanged too: the
    recomputed BatchNorm uses the same batch statistics and skips the
    moving-average update it already made (needs the fused BatchNorm path,
    `fuse_batch_norm`, which holds that switch).

    Args:
        model: a network from `classification.models.build_resnet` or `classification.models.build_plainnet`
            (blocks end in layers named "*_out") after `fuse_batch_norm`.

    Returns:
        The number of blocks recomputed.

    Raises:
        ValueError: a BatchNormalization layer is not on the fused path.
    """
    bns = [l for l in keras_private.all_layers(model) if isinstance(l, layers.BatchNormalization)]
    if not all(is_fused(l) for l in bns):
        raise ValueError(
            "recomputing blocks needs the fused BatchNorm path (--fused_bn, one replica)"
        )
    # Block boundaries: the stem's ReLU, then each block's closing ReLU.
    points = [model.get_layer("stem_relu").output]
    points += [l.output for l in model.layers if l.name.endswith("_out")]
    stem = keras.Model(model.inputs[0], points[0])
    blocks = [keras.Model(a, b) for a, b in itertools.pairwise(points)]
    head = keras.Model(points[-1], model.outputs[0])

    def call(self, inputs, training=None, mask=None):
        x = stem(inputs, training=training)
        for block in blocks:
            x = _recomputed(block, x) if training else block(x, training=training)
        return head(x, training=training)

    model.call = types.MethodType(call, model)
    return len(blocks)


def _recomputed(block, x):
    @tf.custom_gradient
    def run(x):
        # The forward pass keeps nothing for the backward one but `x`: the
        # gradient below closes over `x` and the variables only.
        y = block(x, training=True)

        def grad(dy, variables=None):
            variables = list(variables or [])
            _RECOMPUTING.active = True
            try:
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    # Without this, grappler's common-subexpression pass merges
                    # the re-run with the forward ops and keeps their outputs,
                    # and the memory saved is lost (docs/performance.md).
                    with tf.control_dependencies([dy]):
                        xr = tf.identity(x)
                    y2 = block(xr, training=True)
            finally:
                _RECOMPUTING.active = False
            dx, dvars = tape.gradient(y2, (xr, variables), output_gradients=dy)
            return dx, dvars

        return y, grad

    return run(x)
