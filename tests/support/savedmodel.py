"""A tiny TensorFlow SavedModel with the Object Detection API's serving signature, built in the test."""

from __future__ import annotations

from pathlib import Path

LABEL_MAP_PBTXT = """
item {
  id: 1
  name: 'person'
}
item {
  id: 18
  name: 'dog'
}
"""


def build_detection_savedmodel(path: Path) -> Path:
    """Every image gets a 'person' (class 1) scored by its brightness, and a 'dog' (class 18) at 0.9."""
    import tensorflow as tf

    class Detector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="input_tensor")])
        def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            count = tf.shape(images)[0]
            brightness = tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3]) / 255.0
            boxes = tf.tile(tf.constant([[[0.1, 0.2, 0.6, 0.7], [0.0, 0.0, 0.1, 0.1]]]), [count, 1, 1])  # y_min, x_min, y_max, x_max
            return {
                "detection_boxes": boxes,
                "detection_scores": tf.stack([brightness, tf.fill([count], 0.9)], axis=1),
                "detection_classes": tf.tile(tf.constant([[1.0, 18.0]]), [count, 1]),
                "num_detections": tf.fill([count], 2.0),
            }

    module = Detector()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path
