"""Attention pooling (Eq. 5), densified attention (Eq. 7) and the Gram matrix (Eq. 10) in numpy.

The paper views the conv5_3 feature map as a matrix A in R^{M x D} (M = H*W positions, D
channels). For a label l with attention alpha_l in R^M (Eq. 4 + softmax):

    Eq. 5   z_l = A^T alpha_l,   z_l in R^D     z[n, d] = sum_m A[n, d, m] alpha[n, m]
    Eq. 7   s_l = A z_l,         s_l in R^M     s[n, m] = sum_d A[n, d, m] z[n, d]

Caffe stores A as a blob (N, D, H, W), i.e. per sample the D x M matrix A^T. Both maps are
bilinear and adjoint to each other, so each one's input gradient is the other map:

    attention_pool backward:  dL/dalpha = A dL/dz   (= densify(A, dz))
                              dL/dA[d, m] = sum_n dz[n, d] alpha[n, m]
    densify backward:         dL/dz = A^T dL/ds     (= attention_pool(A, ds))
                              dL/dA[d, m] = sum_n z[n, d] ds[n, m]

Batch broadcasting: A may have batch 1 while alpha / z have batch K (the deploy net encodes
an image once and attends to K labels); the A gradient then sums over the K samples.
The Caffe layers AttentionPool and Densify (python_layers/attention_ops.py) wrap these.

Eq. 10: s_l = A A^T alpha_l = G alpha_l, so row i of G is the densified attention of the
one-hot attention e_i: G e_i = densify(A, attention_pool(A, e_i)) (gram_rows, Figure 6).
"""

import numpy as np


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
        np.multiply(
            u[:, :, np.newaxis], v[:, np.newaxis, :], out=out.reshape(A_shape[0], A_shape[1], -1)
        )


def gram_rows(A, cells):
    """Rows G[i] of G = A A^T (Eq. 10) for feature-map cells i = (row, col), each reshaped
    to the map: A (1, D, h, w), cells [(r, c), ...] -> (len(cells), h, w)."""
    height, width = A.shape[2:]
    onehot = np.zeros((len(cells), height * width), A.dtype)
    for k, (row, col) in enumerate(cells):
        onehot[k, row * width + col] = 1
    return densify(A, attention_pool(A, onehot))[:, 0]
