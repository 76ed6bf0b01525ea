"""The tf.data training stream: augmentation is seeded, resumable, and only shifts and flips."""

import numpy as np

from lth_tf.data.pipeline import training_batches


def test_augmentation_is_seeded_resumable_and_only_shifts_and_flips():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(40, 8, 8, 3)).astype(np.uint8)
    labels = np.arange(40)

    def batches(seed, start=0, augment=True, count=4):
        stream = training_batches(images, labels, 10, seed, start, augment=augment)
        return [(x.numpy(), y.numpy()) for x, y in stream.take(count)]

    first, again = batches(seed=3), batches(seed=3)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    resumed = batches(seed=3, start=2, count=2)
    np.testing.assert_array_equal(resumed[0][0], first[2][0])
    assert not np.array_equal(batches(seed=4)[0][0], first[0][0])

    plain = batches(seed=3, augment=False)
    padded = np.pad(plain[0][0], [(0, 0), (4, 4), (4, 4), (0, 0)])
    flipped, shifted = 0, 0
    for index, image in enumerate(first[0][0]):
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if np.array_equal(
                image,
                (np.flip if flip else lambda a, axis: a)(padded[index], axis=1)[
                    dy : dy + 8, dx : dx + 8
                ],
            )
        ]
        assert matches, f"image {index} is not a shifted (flipped) crop of its original"
        flipped += matches[0][2]
        shifted += matches[0][:2] != (4, 4)
    assert flipped and shifted  # the batch is actually augmented, image by image
