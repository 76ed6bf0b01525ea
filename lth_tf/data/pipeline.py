"""tf.data input pipelines over in-memory images.

Training batches are a pure function of ``(seed, iteration)``: example order is a seeded
permutation per epoch (``index_shuffle``), so a resumed round starts its stream at the iteration
it stopped at and sees exactly the batches an uninterrupted run would, without replaying the
stream. The images are held once in memory (the cache), batches are gathered from it, and the
next batches are prefetched while the current one trains.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from lth_tf.config import TrainingHparams, flag_of
from lth_tf.errors import LthError
from lth_tf.recipe import parse_augment

EVAL_BATCH_SIZE = 1000
# Standard CIFAR augmentation: pad by 4 pixels, crop back at a random offset, flip half.
AUGMENT_PADDING = 4


def check_augmentable(example_shape: tuple[int | None, ...]) -> None:
    """Refuses augmentation for examples that are not images [H, W, C] (feature rows, [H, W]):
    shifting and flipping needs a height, a width and channels.

    >>> check_augmentable((32, 32, 3))
    """
    if len(example_shape) != 3:
        raise LthError(
            f"{flag_of(TrainingHparams, 'augment')} shifts and flips images [H, W, C], but this "
            f"dataset's examples have shape {tuple(example_shape)}; leave augmentation off"
        )


# fn(images, labels, seed) -> (images, labels): one batch, float32 images and int64 labels,
# seed a shape-[2] int64 tensor made from (seed, iteration).
Augmentation = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def cifar_augmentation(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor):
    """``--augment=cifar`` as an augmentation function (:func:`augment_batch`)."""
    return augment_batch(images, seed), labels


def augmentation(spec: str | bool | Augmentation | None) -> Augmentation | None:
    """What ``--augment`` names, as a function: None for ``none``, :func:`cifar_augmentation`,
    or the user's ``package.module:function`` imported (and wrapped so its errors and a batch of
    another shape or dtype are one line).

    >>> augmentation("none") is None, augmentation("cifar") is cifar_augmentation
    (True, True)
    """
    if spec is None or callable(spec):
        return spec
    spec = parse_augment(spec)
    if spec == "none":
        return None
    if spec == "cifar":
        return cifar_augmentation
    return _checked(spec, import_augmentation(spec))


def import_augmentation(spec: str) -> Augmentation:
    """The function of ``--augment=package.module:function``, imported as ``--model``'s
    builders are (from the working directory or ``PYTHONPATH``); a failure is one line."""
    from lth_tf.models.custom import import_user_function

    return import_user_function(spec, "--augment")


def _checked(spec: str, function: Augmentation) -> Augmentation:
    """``function`` whose errors, and a batch of another shape or dtype, are one line (raised
    where it is traced, or called eagerly by :func:`check_augmentation`)."""

    def augment(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor):
        try:
            result = function(images, labels, seed)
        except LthError:
            raise
        except Exception as error:  # noqa: BLE001 - user code can raise anything
            first = (str(error).strip().splitlines() or [""])[0][:200]
            raise LthError(
                f"--augment={spec} raised {type(error).__name__}: {first} (called as "
                f"fn(images {images.dtype.name}{images.shape.as_list()}, labels "
                f"{labels.dtype.name}{labels.shape.as_list()}, seed int64[2]))"
            ) from None
        if not (isinstance(result, tuple | list) and len(result) == 2):
            raise LthError(
                f"--augment={spec} returned {type(result).__name__}; it must return "
                "(images, labels)"
            )
        checked = []
        pairs = zip(("images", "labels"), (images, labels), result, strict=True)
        for name, before, after in pairs:
            try:
                after = tf.convert_to_tensor(after)
            except (TypeError, ValueError):
                raise LthError(
                    f"--augment={spec} returned {name} that are not a tensor "
                    f"({type(after).__name__})"
                ) from None
            # Inside the compiled step some ops lose static sizes (None): compatible is enough
            # there, and the batch's own shape is put back for the model.
            if before.dtype != after.dtype or not before.shape.is_compatible_with(after.shape):
                raise LthError(
                    f"--augment={spec} changed the batch's {name} from "
                    f"{before.dtype.name}{before.shape.as_list()} to "
                    f"{after.dtype.name}{after.shape.as_list()}; return them as they came"
                )
            checked.append(tf.ensure_shape(after, before.shape))
        return checked[0], checked[1]

    return augment


def check_augmentation(
    spec: str,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    num_classes: int,
) -> None:
    """Runs ``--augment``'s function once, eagerly, on the first training batch, so an import
    error, an exception, a changed batch or labels that are no class (of ``num_classes``) is
    one line before anything is written."""
    function = augmentation(spec)
    if function is None:
        return
    if spec == "cifar":
        check_augmentable(images.shape[1:])
        return
    count = min(batch_size, len(images))
    images, augmented = function(
        tf.cast(tf.constant(images[:count]), tf.float32),
        tf.constant(labels[:count], tf.int64),
        tf.constant([seed, 0], tf.int64),
    )
    if not np.isfinite(images.numpy()).all():
        raise LthError(
            f"--augment={spec} returned images with NaN or infinite values for the first batch; "
            "the model would train on them and diverge"
        )
    augmented = augmented.numpy()
    outside = augmented[(augmented < 0) | (augmented >= num_classes)]
    if outside.size:
        raise LthError(
            f"--augment={spec} returned label {int(outside[0])} for the first batch, which is "
            f"no class of the data's {num_classes} (0 .. {num_classes - 1}); return each "
            "example's class index"
        )


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
    augment: str | bool | Augmentation | None = None,
) -> tf.data.Dataset:
    """Endless batches of ``(float32 pixels, int64 labels)``; batch ``i`` depends on ``seed`` only.

    Epoch ``e`` visits every example once, in the order of a permutation seeded by
    ``(seed, e)``; a batch that straddles two epochs takes the end of one and the start of the next.
    ``augment`` (:func:`augmentation`: a spec such as ``"cifar"`` or a function) changes every
    batch, as a pure function of ``(seed, i)`` too.

    >>> ds = training_batches(np.zeros((10, 2, 2, 1), np.uint8), np.arange(10), 4, seed=0)
    >>> [b.shape.as_list() for b in next(iter(ds))]
    [[4, 2, 2, 1], [4]]
    """
    augment = augmentation(augment)
    if augment is cifar_augmentation:
        check_augmentable(images.shape[1:])
    num_examples = len(images)
    if batch_size > num_examples:
        raise ValueError(f"batch size {batch_size} exceeds the {num_examples} training examples")
    images_t = tf.constant(images)
    labels_t = tf.constant(labels, dtype=tf.int64)

    def batch(iteration: tf.Tensor):
        return training_batch(images_t, labels_t, iteration, batch_size, seed, augment)

    dataset = tf.data.Dataset.range(start_iteration, np.iinfo(np.int64).max)
    dataset = dataset.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _with_options(dataset.prefetch(tf.data.AUTOTUNE))


def stream_indices(positions: tf.Tensor, num_examples: int, seed: int | tf.Tensor) -> tf.Tensor:
    """Training-set indices at increasing ``positions`` of the stream (epoch after epoch).

    Position ``p`` is example ``p % n`` of epoch ``p // n``, whose order is the permutation
    seeded by ``(seed, epoch)``; batch ``i`` is positions ``i * batch_size`` onwards.

    >>> stream_indices(tf.range(4, dtype=tf.int64), 4, seed=0).numpy()  # doctest: +SKIP
    array([2, 0, 3, 1])
    """
    positions = tf.cast(positions, tf.int64)
    epochs = positions // num_examples
    within = positions % num_examples
    indices = tf.zeros_like(positions)
    # Positions increase, so the epochs they cover are a short run (one or two for a batch).
    for epoch in tf.range(epochs[0], epochs[-1] + 1):
        shuffled = tf.random.experimental.index_shuffle(
            within, seed=tf.stack([tf.cast(seed, tf.int64), epoch]), max_index=num_examples - 1
        )
        indices = tf.where(epochs == epoch, shuffled, indices)
    return indices


def gather_batch(
    images: tf.Tensor,
    labels: tf.Tensor,
    indices: tf.Tensor,
    iteration: tf.Tensor,
    seed: int | tf.Tensor,
    augment: str | bool | Augmentation | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The examples at ``indices`` as float32 pixels and int64 labels, augmented if asked
    (:func:`augmentation`) with the batch's stateless seed ``[seed, iteration]``."""
    batch_images = tf.cast(tf.gather(images, indices), tf.float32)
    batch_labels = tf.gather(tf.cast(labels, tf.int64), indices)
    augment = augmentation(augment)
    if augment is None:
        return batch_images, batch_labels
    if augment is cifar_augmentation:
        check_augmentable(tuple(images.shape[1:]))  # at trace time: the shape is static
    batch_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(iteration, tf.int64)])
    return augment(batch_images, batch_labels, batch_seed)


def training_batch(
    images: tf.Tensor,
    labels: tf.Tensor,
    iteration: tf.Tensor,
    batch_size: int,
    seed: int,
    augment: str | bool | Augmentation | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Batch ``iteration`` of the training stream: float32 pixels and int64 labels.

    Every training path builds its batches from :func:`stream_indices` and :func:`gather_batch`
    (the ``tf.data`` stream of :func:`training_batches`, the trainer's on-device one), so they
    are the same batches.

    >>> images = tf.zeros((10, 2, 2, 1), tf.uint8)
    >>> [t.shape.as_list() for t in training_batch(images, tf.range(10), 3, 4, seed=0)]
    [[4, 2, 2, 1], [4]]
    """
    iteration = tf.cast(iteration, tf.int64)
    positions = iteration * batch_size + tf.range(batch_size, dtype=tf.int64)
    indices = stream_indices(positions, int(images.shape[0]), seed)
    return gather_batch(images, labels, indices, iteration, seed, augment)


def augment_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Pads each image by 4 zero pixels, crops it back at a random offset, flips half of them.

    Each image gets its own offset and flip, drawn by stateless ops from ``seed`` (two
    integers), so the same seed gives the same batch, in any process.

    >>> batch = tf.ones((2, 8, 8, 1))
    >>> augment_batch(batch, tf.constant([0, 7], tf.int64)).shape.as_list()
    [2, 8, 8, 1]
    """
    count, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    pad = AUGMENT_PADDING
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    offsets = tf.random.stateless_uniform(
        [count, 2], seed=crop_seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32
    )
    # Gather rows, then columns, per image: an exact integer shift, no resampling.
    rows = offsets[:, :1] + tf.range(height)[None]
    cols = offsets[:, 1:] + tf.range(width)[None]
    shifted = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    flip = tf.random.stateless_uniform([count], seed=flip_seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(shifted, axis=[2]), shifted)


def evaluation_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int = EVAL_BATCH_SIZE
) -> tf.data.Dataset:
    """One pass over a split in large batches, cast once and cached."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))
    dataset = dataset.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    return _with_options(dataset.cache().prefetch(tf.data.AUTOTUNE))
