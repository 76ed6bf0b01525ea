"""Augmentation functions as a user writes them, for ``--augment=tests.augmentations:NAME``:
``fn(images, labels, seed) -> (images, labels)`` on one batch."""

from __future__ import annotations

import tensorflow as tf


def jitter(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor):
    """Noise and a horizontal flip drawn from the batch's seed: another iteration (or seed) is
    another batch, the same one the same batch, in any process."""
    noise_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    noisy = images + tf.random.stateless_uniform(tf.shape(images), noise_seed, -30.0, 30.0)
    flip = tf.random.stateless_uniform([tf.shape(images)[0]], flip_seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(noisy, axis=[2]), noisy), labels


def crops(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor):
    """A bug: returns smaller images."""
    return images[:, 1:], labels


def raises(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor):
    """A bug: raises."""
    raise ValueError("no such op")


def relabels(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor):
    """A bug: labels past the last class."""
    return images, labels + 10


def divides_by_zero(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor):
    """A bug: normalizes by a zero standard deviation."""
    return images / tf.zeros_like(images), labels
