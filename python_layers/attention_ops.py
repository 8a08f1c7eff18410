"""Attention pooling (Eq. 5) and densified attention (Eq. 7) of TransferNet as Caffe layers.

The math, forward and backward, is transfernet/attention.py; here the layers check their
bottoms and write its results straight into the blobs. Bottoms: A, the conv5_3 blob
(NA, D, H, W), and alpha (AttentionPool) or z (Densify); A's batch NA is N or 1 (the deploy
net encodes an image once and attends to K labels).
"""

import caffe
from layer_params import parse_params, report_errors

from transfernet.attention import attention_pool, densify, feature_gradient


def check_shapes(layer, A, other, other_name, other_shapes):
    """Raise ValueError unless shape A is 4-D and shape `other` is one of
    `other_shapes(N, D, H, W)` with N its own batch and A's batch equal to N or 1."""
    name = type(layer).__name__
    if len(A) != 4:
        raise ValueError("%s: bottom A must be 4-D (N, D, H, W), got shape %s" % (name, A))
    n = other[0] if len(other) else None
    expected = other_shapes(n, *A[1:])
    if other not in expected:
        raise ValueError(
            "%s: bottom %s must have shape %s for A of shape %s, got %s"
            % (name, other_name, " or ".join(map(str, expected)), A, other)
        )
    if A[0] not in (1, n):
        raise ValueError(
            "%s: A's batch must be 1 or equal %s's batch %d, got A of shape %s"
            % (name, other_name, n, A)
        )


class _AttentionLayer(caffe.Layer):
    """Two bottoms (A, other), one top, no param_str keys.

    reshape reads only blob shapes (no data access: in a GPU net that would copy the blob to
    the host); forward and backward write straight into the blobs (no output-sized
    temporaries).
    """

    def setup(self, bottom, top):
        parse_params(self, self.param_str, {})
        if len(bottom) != 2 or len(top) != 1:
            raise ValueError(
                "%s: expected 2 bottoms and 1 top, got %d bottoms and %d tops"
                % (type(self).__name__, len(bottom), len(top))
            )


@report_errors
class AttentionPool(_AttentionLayer):
    """Eq. 5. Bottoms: A (NA, D, H, W), alpha (N, 1, H, W) or (N, H*W); top: z (N, D)."""

    def reshape(self, bottom, top):
        A, alpha = tuple(bottom[0].shape), tuple(bottom[1].shape)
        check_shapes(self, A, alpha, "alpha", lambda n, d, h, w: [(n, 1, h, w), (n, h * w)])
        top[0].reshape(alpha[0], A[1])

    def forward(self, bottom, top):
        attention_pool(bottom[0].data, bottom[1].data, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        A, alpha, dz = bottom[0].data, bottom[1].data, top[0].diff
        if propagate_down[0]:
            feature_gradient(A.shape, dz, alpha, out=bottom[0].diff)
        if propagate_down[1]:
            densify(A, dz, out=bottom[1].diff)


@report_errors
class Densify(_AttentionLayer):
    """Eq. 7. Bottoms: A (NA, D, H, W), z (N, D); top: s (N, 1, H, W)."""

    def reshape(self, bottom, top):
        A, z = tuple(bottom[0].shape), tuple(bottom[1].shape)
        check_shapes(self, A, z, "z", lambda n, d, h, w: [(n, d)])
        top[0].reshape(z[0], 1, *A[2:])

    def forward(self, bottom, top):
        densify(bottom[0].data, bottom[1].data, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        A, z, ds = bottom[0].data, bottom[1].data, top[0].diff
        if propagate_down[0]:
            feature_gradient(A.shape, z, ds, out=bottom[0].diff)
        if propagate_down[1]:
            attention_pool(A, ds, out=bottom[1].diff)
