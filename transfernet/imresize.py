"""MATLAB's imresize (Image Processing Toolbox) in numpy, for the authors' inference protocol.

Their MATLAB resizes the padded image to the net input with imresize(..., 'bilinear') and the
probability maps back with imresize's default, 'bicubic'. imresize is a separable linear map:
along each axis an output sample u = x / scale + (1 - 1 / scale) / 2 (1-based coordinates)
is the weighted sum of the input samples around it, the weights being the kernel (triangle
for bilinear, Keys' cubic with a = -0.5 for bicubic) normalised to sum 1; when shrinking
(scale < 1) the kernel is stretched by 1 / scale (antialiasing, on by default); indices
outside the input are mirrored (symmetric padding). OpenCV's INTER_LINEAR does not
antialias, hence this module.
"""

import numpy as np

CUBIC_A = -0.5  # MATLAB's bicubic kernel (Keys 1981)


def triangle(x):
    return np.maximum(1 - np.abs(x), 0)


def cubic(x):
    x = np.abs(x)
    a = CUBIC_A
    near = ((a + 2) * x - (a + 3)) * x**2 + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x <= 2, far, 0))


KERNELS = {"bilinear": (triangle, 2.0), "bicubic": (cubic, 4.0)}  # kernel, support width


def weights(in_length, out_length, method, antialias=True):
    """(out_length, in_length) float64 matrix M of one axis: out = M @ in."""
    kernel, width = KERNELS[method]
    scale = out_length / in_length
    if scale < 1 and antialias:
        width /= scale

        def h(x):
            return scale * kernel(scale * x)

    else:
        h = kernel
    u = np.arange(1, out_length + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    indices = left[:, None] + np.arange(int(np.ceil(width)) + 2)[None, :]
    taps = h(u[:, None] - indices)
    taps /= taps.sum(1, keepdims=True)
    mirrored = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    columns = mirrored[np.mod(indices - 1, 2 * in_length).astype(np.int64)]
    matrix = np.zeros((out_length, in_length))
    np.add.at(
        matrix, (np.repeat(np.arange(out_length), indices.shape[1]), columns.ravel()), taps.ravel()
    )
    return matrix


def imresize(image, shape, method="bicubic", antialias=True):
    """An (H, W) or (H, W, C) array resized to shape (h, w), float64, as MATLAB's
    imresize(image, [h w], method) on a double image (rows, then columns: both orders are
    the same linear map)."""
    image = np.asarray(image, np.float64)
    rows = weights(image.shape[0], shape[0], method, antialias)
    columns = weights(image.shape[1], shape[1], method, antialias)
    out = np.tensordot(rows, image, axes=(1, 0))  # (h, W, ...)
    out = np.tensordot(columns, out, axes=(1, 1))  # (w, h, ...)
    return np.swapaxes(out, 0, 1)
