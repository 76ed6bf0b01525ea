"""tf.data input pipelines over in-memory images.

Training batches are a pure function of ``(seed, iteration)``: example order is a seeded
permutation per epoch (``index_shuffle``), so a resumed round starts its stream at the iteration
it stopped at and sees exactly the batches an uninterrupted run would, without replaying the
stream. The images are held once in memory (the cache), batches are gathered from it, and the
next batches are prefetched while the current one trains.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

EVAL_BATCH_SIZE = 1000


def _with_options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    # The stream is generated, not read from files: shard it by data across workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def training_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    start_iteration: int = 0,
) -> tf.data.Dataset:
    """Endless batches of ``(float32 pixels, int64 labels)``; batch ``i`` depends on ``seed`` only.

    Epoch ``e`` visits every example once, in the order of a permutation seeded by
    ``(seed, e)``; a batch that straddles two epochs takes the end of one and the start of the next.

    >>> ds = training_batches(np.zeros((10, 2, 2, 1), np.uint8), np.arange(10), 4, seed=0)
    >>> [b.shape.as_list() for b in next(iter(ds))]
    [[4, 2, 2, 1], [4]]
    """
    num_examples = len(images)
    if batch_size > num_examples:
        raise ValueError(f"batch size {batch_size} exceeds the {num_examples} training examples")
    images_t = tf.constant(images)
    labels_t = tf.constant(labels, dtype=tf.int64)
    offsets = tf.range(batch_size, dtype=tf.int64)

    def batch(iteration: tf.Tensor):
        positions = iteration * batch_size + offsets
        first_epoch = positions[0] // num_examples
        within = positions % num_examples

        def permuted(epoch: tf.Tensor) -> tf.Tensor:
            return tf.random.experimental.index_shuffle(
                within,
                seed=tf.stack([tf.constant(seed, tf.int64), epoch]),
                max_index=num_examples - 1,
            )

        indices = tf.where(
            positions // num_examples == first_epoch,
            permuted(first_epoch),
            permuted(first_epoch + 1),
        )
        return tf.cast(tf.gather(images_t, indices), tf.float32), tf.gather(labels_t, indices)

    dataset = tf.data.Dataset.range(start_iteration, np.iinfo(np.int64).max)
    dataset = dataset.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _with_options(dataset.prefetch(tf.data.AUTOTUNE))


def evaluation_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int = EVAL_BATCH_SIZE
) -> tf.data.Dataset:
    """One pass over a split in large batches, cast once and cached."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))
    dataset = dataset.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    return _with_options(dataset.cache().prefetch(tf.data.AUTOTUNE))
