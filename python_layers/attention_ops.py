"""Attention pooling (Eq. 5) and densified attention (Eq. 7) of TransferNet as Caffe layers.

The paper views the conv5_3 feature map as a matrix A in R^{M x D} (M = H*W positions, D
channels). For a label l with attention alpha_l in R^M (Eq. 4 + softmax):

    Eq. 5   z_l = A^T alpha_l,   z_l in R^D     z[n, d] = sum_m A[n, d, m] alpha[n, m]
    Eq. 7   s_l = A z_l,         s_l in R^M     s[n, m] = sum_d A[n, d, m] z[n, d]

Caffe stores A as a blob (N, D, H, W), i.e. per sample the D x M matrix A^T. Both maps are
bilinear and adjoint to each other, so each one's input gradient is the other map:

    AttentionPool backward:  dL/dalpha = A dL/dz   (= densify(A, dz))
                             dL/dA[d, m] = sum_n dz[n, d] alpha[n, m]
    Densify backward:        dL/dz = A^T dL/ds     (= attention_pool(A, ds))
                             dL/dA[d, m] = sum_n z[n, d] ds[n, m]

Batch broadcasting: A may have batch 1 while alpha / z have batch K (the deploy net encodes
an image once and attends to K labels); the A gradient then sums over the K samples.
"""
import numpy as np

import caffe
from layer_params import parse_params, report_errors


def _as_matrix(A):
    """View an (NA, D, H, W) blob as NA matrices of shape D x M."""
    return A.reshape(A.shape[0], A.shape[1], -1)


def attention_pool(A, alpha, out=None):
    """Eq. 5, z = A^T alpha: A (NA, D, H, W), alpha (N, ...) with H*W values -> z (N, D).

    out: optional contiguous (N, D) array written in place (e.g. a top blob).
    """
    n, d = alpha.shape[0], A.shape[1]
    z = np.empty((n, d), A.dtype) if out is None else out
    np.matmul(_as_matrix(A), alpha.reshape(n, -1, 1), out=z.reshape(n, d, 1))
    return z


def densify(A, z, out=None):
    """Eq. 7, s = A z: A (NA, D, H, W), z (N, D) -> s (N, 1, H, W).

    out: optional contiguous array of N*H*W values written in place (e.g. a top blob).
    """
    n, shape = z.shape[0], (z.shape[0], 1) + A.shape[2:]
    s = np.empty(shape, A.dtype) if out is None else out
    np.matmul(z.reshape(n, 1, -1), _as_matrix(A), out=s.reshape(n, 1, -1))
    return s.reshape(shape)


def feature_gradient(A_shape, u, v, out):
    """dL/dA of both maps into `out` (shaped A_shape): sum over samples n of u[n, d] v[n, m],
    reduced to A's batch. u (N, D) and v (N, ...) with H*W values."""
    v = v.reshape(v.shape[0], -1)
    if A_shape[0] == 1:
        np.matmul(u.T, v, out=out.reshape(A_shape[1], -1))
    else:
        np.multiply(u[:, :, np.newaxis], v[:, np.newaxis, :],
                    out=out.reshape(A_shape[0], A_shape[1], -1))


def check_shapes(layer, A, other, other_name, other_shapes):
    """Raise ValueError unless shape A is 4-D and shape `other` is one of
    `other_shapes(N, D, H, W)` with N its own batch and A's batch equal to N or 1."""
    name = type(layer).__name__
    if len(A) != 4:
        raise ValueError("%s: bottom A must be 4-D (N, D, H, W), got shape %s"
                         % (name, A))
    n = other[0] if len(other) else None
    expected = other_shapes(n, *A[1:])
    if other not in expected:
        raise ValueError("%s: bottom %s must have shape %s for A of shape %s, got %s"
                         % (name, other_name, " or ".join(map(str, expected)), A, other))
    if A[0] not in (1, n):
        raise ValueError("%s: A's batch must be 1 or equal %s's batch %d, got A of shape %s"
                         % (name, other_name, n, A))


class _AttentionLayer(caffe.Layer):
    """Two bottoms (A, other), one top, no param_str keys.

    reshape reads only blob shapes (no data access: in a GPU net that would copy the blob to
    the host); forward and backward write straight into the blobs (no output-sized
    temporaries).
    """

    def setup(self, bottom, top):
        parse_params(self, self.param_str, {})
        if len(bottom) != 2 or len(top) != 1:
            raise ValueError("%s: expected 2 bottoms and 1 top, got %d bottoms and %d tops"
                             % (type(self).__name__, len(bottom), len(top)))


@report_errors
class AttentionPool(_AttentionLayer):
    """Eq. 5. Bottoms: A (NA, D, H, W), alpha (N, 1, H, W) or (N, H*W); top: z (N, D)."""

    def reshape(self, bottom, top):
        A, alpha = tuple(bottom[0].shape), tuple(bottom[1].shape)
        check_shapes(self, A, alpha, "alpha",
                     lambda n, d, h, w: [(n, 1, h, w), (n, h * w)])
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
