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
from layer_params import parse_params


def _as_matrix(A):
    """View an (NA, D, H, W) blob as NA matrices of shape D x M."""
    return A.reshape(A.shape[0], A.shape[1], -1)


def attention_pool(A, alpha):
    """Eq. 5, z = A^T alpha: A (NA, D, H, W), alpha (N, ...) with H*W values -> z (N, D)."""
    weights = alpha.reshape(alpha.shape[0], -1, 1)
    return np.matmul(_as_matrix(A), weights)[:, :, 0]


def densify(A, z):
    """Eq. 7, s = A z: A (NA, D, H, W), z (N, D) -> s (N, 1, H, W)."""
    s = np.matmul(z[:, np.newaxis, :], _as_matrix(A))
    return s.reshape((z.shape[0], 1) + A.shape[2:])


def feature_gradient(A, u, v):
    """dL/dA of both maps: sum over samples n of u[n, d] v[n, m], reduced to A's batch.

    u (N, D) and v (N, ...) with H*W values; returns an array shaped like A.
    """
    v = v.reshape(v.shape[0], -1)
    if A.shape[0] == 1:
        grad = np.matmul(u.T, v)[np.newaxis]
    else:
        grad = u[:, :, np.newaxis] * v[:, np.newaxis, :]
    return grad.reshape(A.shape)


def check_shapes(layer, A, other, other_name, other_shapes):
    """Raise ValueError unless A is 4-D and `other` has one of `other_shapes(N, D, H, W)`
    with N its own batch and A's batch equal to N or 1."""
    name = type(layer).__name__
    if len(A.shape) != 4:
        raise ValueError("%s: bottom A must be 4-D (N, D, H, W), got shape %s"
                         % (name, tuple(A.shape)))
    n = other.shape[0] if len(other.shape) else None
    expected = other_shapes(n, *A.shape[1:])
    if tuple(other.shape) not in expected:
        raise ValueError("%s: bottom %s must have shape %s for A of shape %s, got %s"
                         % (name, other_name, " or ".join(map(str, expected)),
                            tuple(A.shape), tuple(other.shape)))
    if A.shape[0] not in (1, n):
        raise ValueError("%s: A's batch must be 1 or equal %s's batch %d, got A of shape %s"
                         % (name, other_name, n, tuple(A.shape)))


class _AttentionLayer(caffe.Layer):
    """Two bottoms (A, other), one top, no param_str keys."""

    def setup(self, bottom, top):
        parse_params(self, self.param_str, {})
        if len(bottom) != 2 or len(top) != 1:
            raise ValueError("%s: expected 2 bottoms and 1 top, got %d bottoms and %d tops"
                             % (type(self).__name__, len(bottom), len(top)))


class AttentionPool(_AttentionLayer):
    """Eq. 5. Bottoms: A (NA, D, H, W), alpha (N, 1, H, W) or (N, H*W); top: z (N, D)."""

    def reshape(self, bottom, top):
        A, alpha = bottom[0].data, bottom[1].data
        check_shapes(self, A, alpha, "alpha",
                     lambda n, d, h, w: [(n, 1, h, w), (n, h * w)])
        top[0].reshape(alpha.shape[0], A.shape[1])

    def forward(self, bottom, top):
        top[0].data[...] = attention_pool(bottom[0].data, bottom[1].data)

    def backward(self, top, propagate_down, bottom):
        A, alpha, dz = bottom[0].data, bottom[1].data, top[0].diff
        if propagate_down[0]:
            bottom[0].diff[...] = feature_gradient(A, dz, alpha)
        if propagate_down[1]:
            bottom[1].diff[...] = densify(A, dz).reshape(alpha.shape)


class Densify(_AttentionLayer):
    """Eq. 7. Bottoms: A (NA, D, H, W), z (N, D); top: s (N, 1, H, W)."""

    def reshape(self, bottom, top):
        A, z = bottom[0].data, bottom[1].data
        check_shapes(self, A, z, "z", lambda n, d, h, w: [(n, d)])
        top[0].reshape(z.shape[0], 1, *A.shape[2:])

    def forward(self, bottom, top):
        top[0].data[...] = densify(bottom[0].data, bottom[1].data)

    def backward(self, top, propagate_down, bottom):
        A, z, ds = bottom[0].data, bottom[1].data, top[0].diff
        if propagate_down[0]:
            bottom[0].diff[...] = feature_gradient(A, z, ds)
        if propagate_down[1]:
            bottom[1].diff[...] = attention_pool(A, ds)
