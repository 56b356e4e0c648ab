"""Backend-native NMS kernels. Only `keras_rtmdet.ops.nms` calls these."""

import importlib.util


def torchvision_available():
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision.ops  # noqa: F401
    except Exception:
        # A torchvision built for another torch fails at import with an
        # operator-registration error; treat it as absent.
        return False
    return True


def nms_keep_tensorflow(boxes, scores, valid, iou_threshold, max_output=None):
    """Per image `tf.image.non_max_suppression` on the valid candidates, stopping after `max_output` kept."""
    import tensorflow as tf

    boxes = tf.convert_to_tensor(boxes)
    num = tf.shape(boxes)[1]
    max_output = num if max_output is None else tf.minimum(num, int(max_output))
    masked_scores = tf.where(valid, tf.cast(scores, tf.float32), tf.fill(tf.shape(scores), -1e30))

    def one(args):
        b, s, v = args
        # The score floor drops the invalid slots before the kernel's greedy loop instead of visiting them.
        selected = tf.image.non_max_suppression(
            tf.cast(b, tf.float32), s, max_output_size=max_output, iou_threshold=iou_threshold, score_threshold=-1e29
        )
        hit = tf.scatter_nd(selected[:, None], tf.ones_like(selected), shape=[num])
        return tf.logical_and(hit > 0, v)

    return tf.map_fn(
        one, (boxes, masked_scores, valid), fn_output_signature=tf.TensorSpec([None], tf.bool)
    )


def nms_keep_torchvision(boxes, scores, valid, iou_threshold):
    """`torchvision.ops.batched_nms` over the valid candidates of the whole batch.

    The image index is the grouping key, so one call (and one host sync for
    the `nonzero`) serves the batch; class separation is already in `boxes`.
    """
    import torch
    import torchvision

    boxes = torch.as_tensor(boxes)
    scores = torch.as_tensor(scores)
    valid = torch.as_tensor(valid)
    image, index = torch.nonzero(valid, as_tuple=True)
    keep = torch.zeros_like(valid)
    if image.numel():
        selected = torchvision.ops.batched_nms(
            boxes[image, index].float(), scores[image, index].float(), image, iou_threshold
        )
        keep[image[selected], index[selected]] = True
    return keep


def overlap_nms_keep_tensorflow(overlaps, scores, valid, iou_threshold):
    """Per image `tf.image.non_max_suppression_overlaps` on a precomputed (B, M, M) IoU matrix."""
    import tensorflow as tf

    overlaps = tf.cast(tf.convert_to_tensor(overlaps), tf.float32)
    num = tf.shape(overlaps)[1]
    masked_scores = tf.where(valid, tf.cast(scores, tf.float32), tf.fill(tf.shape(scores), -1e30))

    def one(args):
        o, s, v = args
        selected = tf.image.non_max_suppression_overlaps(
            o, s, max_output_size=num, overlap_threshold=iou_threshold, score_threshold=-1e29
        )
        hit = tf.scatter_nd(selected[:, None], tf.ones_like(selected), shape=[num])
        return tf.logical_and(hit > 0, v)

    return tf.map_fn(
        one, (overlaps, masked_scores, valid), fn_output_signature=tf.TensorSpec([None], tf.bool)
    )
