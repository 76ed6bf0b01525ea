"""SavedModel -> .tflite: float32, float16 weights and full-integer int8, weights stored sparse.

Without ``Optimize.EXPERIMENTAL_SPARSITY`` a pruned model's file is as large as the dense one;
with it, every weight tensor that is at least 30% zeros is stored in a sparse format. The
float file uses that optimization alone: adding ``Optimize.DEFAULT`` without a representative
set would quantize the weights to int8 (dynamic range), which is not a float32 model.

>>> content = float_tflite("saved_models/e/round_10/saved_model")  # doctest: +SKIP
>>> content[4:8]  # doctest: +SKIP
b'TFL3'
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from lth_tf.errors import LthError
from lth_tf.startup import quiet_stderr

PIXEL_RANGE = (0, 255)


def float_tflite(saved_model: str | Path) -> bytes:
    """A float32 .tflite that takes raw pixel values (0..255) as float32."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return _converted(converter, "the float32 .tflite")


def fp16_tflite(saved_model: str | Path, sparse: bool = True) -> bytes:
    """A .tflite with float16 weights (computed in float32, input float32 raw pixels), its
    weights stored sparse (``sparse=False``: the same weights stored dense).

    float16 halves every weight's bytes; sparse storage adds an index per surviving weight,
    so at low sparsity the dense encoding is the smaller one (the export keeps the smaller
    one that computes what the dense one does: :mod:`lth_tf.export.deploy`).
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse:
        converter.optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.target_spec.supported_types = [tf.float16]
    return _converted(converter, "the float16 .tflite")


def int8_tflite(
    saved_model: str | Path,
    representative: np.ndarray,
    uint8_input: bool = True,
    sparse: bool = True,
) -> bytes:
    """A full-integer int8 .tflite taking uint8 pixels as they are and giving int8 logits.

    ``representative`` (raw pixels, [N, H, W, C]) calibrates every activation's range. Its
    pixel range is widened to the full 0..255 first: the input's quantization comes from it,
    and only (scale 1, zero point 0) makes a uint8 input value the pixel value itself.
    Data that is not uint8 pixels (a user's float features) keeps a float32 input, quantized
    inside the model with the range the representative examples span: ``uint8_input=False``.
    """
    images = anchored_pixel_range(representative) if uint8_input else representative
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse:  # weights stored sparse (``sparse=False``: the same quantization, stored dense)
        converter.optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.representative_dataset = lambda: ([image[np.newaxis]] for image in images)
    # Integer kernels only: conversion fails rather than leave an op in float.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8 if uint8_input else tf.float32
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # The input's range comes from the representative set, as intended.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return _converted(converter, "the full-integer int8 .tflite")


def _converted(converter: tf.lite.TFLiteConverter, what: str) -> bytes:
    """``converter.convert()``; a model LiteRT cannot convert is one line naming why (the
    converter's own lines on stderr are dropped then)."""
    with quiet_stderr(explained=(LthError,)):
        try:
            return converter.convert()
        except Exception as error:  # noqa: BLE001 - the converter raises several kinds
            if "Converter" not in type(error).__name__:
                raise
            raise _conversion_error(str(error), what) from None


def _conversion_error(text: str, what: str) -> LthError:
    """The converter's error text as one line: the op without a kernel, or the first error
    without its location, and the layer it is in."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    missing = [line for line in lines if line.startswith("TF Select ops:")]
    errors = [_without_location(line) for line in lines if "error:" in line]
    if missing:
        reason = "no LiteRT kernel for " + missing[0].split(":", 1)[1].strip()
    else:
        reason = next((e for e in errors if e), lines[0] if lines else "no reason given")
    layer = _failing_layer(next((line for line in lines if "error:" in line), ""))
    return LthError(
        f"LiteRT's converter cannot write {what} of this model ({reason[:240]}): replace "
        f"{f'layer {layer!r}' if layer else 'the layer that computes it'} to export the model"
    )


def _without_location(error_line: str) -> str:
    """What an MLIR error line says, without its ``loc(...)`` prefix (often longer than the
    message itself).

    >>> _without_location('<unknown>:0: error: loc(fused["A:", "m/x@f"]): tf.A op fails')
    'tf.A op fails'
    """
    text = error_line.split("error:", 1)[-1].strip()
    if text.startswith("loc("):
        depth = 0
        for position, character in enumerate(text):
            depth += {"(": 1, ")": -1}.get(character, 0)
            if character == ")" and depth == 0:
                return text[position + 1 :].lstrip(": ").strip()
    return text


def _failing_layer(error_line: str) -> str | None:
    """The Keras layer an MLIR error's location names (``model/layer/Op@function``), if any.

    >>> _failing_layer('error: loc(callsite(fused["TensorListReserve:", "TensorArrayV2_1@'
    ...     '__inference_standard_lstm_674"] at callsite(fused["PartitionedCall:", '
    ...     '"sequential/my_lstm/PartitionedCall@__inference__wrapped_model_959"] at x))): ...')
    'sequential/my_lstm'
    """
    for name in re.findall(r'fused\["[^"]*", "([^"]*)"\]', error_line):
        path = name.split("@", 1)[0].split("/")
        if len(path) > 1:
            return "/".join(path[:-1])
    return None


def representative_images(images: np.ndarray, count: int = 500, seed: int = 0) -> np.ndarray:
    """``count`` images drawn without replacement (seeded) from ``images``, as float32 (integer
    features other than uint8 pixels keep their dtype).

    >>> representative_images(np.zeros((10, 2, 2, 1), np.uint8), count=3).shape
    (3, 2, 2, 1)
    >>> representative_images(np.zeros((10, 4), np.int32), count=3).dtype  # token ids
    dtype('int32')
    """
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=min(count, len(images)), replace=False)
    # Integer features other than pixels (token ids for an Embedding) reach an integer input,
    # which calibration must feed as such.
    integer = np.issubdtype(images.dtype, np.integer) and images.dtype != np.uint8
    return images[np.sort(chosen)].astype(images.dtype if integer else np.float32)


def anchored_pixel_range(images: np.ndarray) -> np.ndarray:
    """A copy of ``images`` whose values span 0..255: one pixel set to each end if needed.

    >>> anchored_pixel_range(np.full((2, 2), 7.0)).tolist()
    [[0.0, 7.0], [7.0, 255.0]]
    """
    images = np.array(images, dtype=np.float32)
    low, high = PIXEL_RANGE
    if images.min() > low:
        images.flat[0] = low
    if images.max() < high:
        images.flat[-1] = high
    return images
