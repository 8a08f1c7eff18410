"""An independent float64 numpy forward of the authors' nets, written from the semantics of their
layers (the fork's C++ and stock Caffe's), to check our stock-Caffe nets against.

forward() walks a list of the authors' LayerParameters (transfernet.authors_format messages:
their names, types and parameters) over a {blob: array} dict. Batches broadcast as numpy does:
a batch-1 blob (the image and its encoder) stands for the same blob in every sample of a
batch-K one (the K one-hot labels), which is what the authors' per-label forwards compute.
Nothing here uses transfernet.nets or our layers.
"""

import numpy as np

from transfernet import authors_format


def conv(x, w, b, pad, stride=1):
    """Convolution (N, C, H, W) * (O, C, k, k): out[n,o,y,x] = b[o] + sum_{c,i,j}
    w[o,c,i,j] x[n,c,stride*y+i-pad, stride*x+j-pad] (zeros outside)."""
    n, c, h, wid = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wid + 2 * pad - kw) // stride + 1
    out = np.empty((n, o, oh, ow))
    for k in range(n):
        cols = np.empty((c, kh, kw, oh, ow))
        for i in range(kh):
            for j in range(kw):
                cols[:, i, j] = xp[k, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
        out[k] = (w.reshape(o, -1) @ cols.reshape(c * kh * kw, -1)).reshape(o, oh, ow)
    return out + b[None, :, None, None]


def deconv(x, w, b, pad):
    """Transposed convolution, stride 1, weights (C_in, C_out, k, k): every input value
    x[n,c,y,x] adds w[c,o,i,j] x[n,c,y,x] to out[n,o,y+i-pad,x+j-pad] (scatter, then crop)."""
    n, c, h, wid = x.shape
    _, o, kh, kw = w.shape
    out = np.zeros((n, o, h + kh - 1, wid + kw - 1))
    for k in range(n):
        # contributions[o, i, j, y, x] = sum_c w[c, o, i, j] x[c, y, x]
        contrib = (w.reshape(c, -1).T @ x[k].reshape(c, -1)).reshape(o, kh, kw, h, wid)
        for i in range(kh):
            for j in range(kw):
                out[k, :, i : i + h, j : j + wid] += contrib[:, i, j]
    out = out[:, :, pad : pad + h + kh - 1 - 2 * pad, pad : pad + wid + kw - 1 - 2 * pad]
    return out + b[None, :, None, None]


def max_pool(x, k, s):
    """MAX pooling k x k / s (exact windows) and its mask: the flat index y*W + x in the input
    plane of each window's first maximum in raster order."""
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    windows = np.empty((n, c, oh, ow, k * k))
    index = np.empty((oh, ow, k * k))
    for i in range(k):
        for j in range(k):
            windows[..., i * k + j] = x[:, :, i : i + s * oh : s, j : j + s * ow : s]
            rows, cols = np.mgrid[:oh, :ow]
            index[:, :, i * k + j] = (s * rows + i) * w + (s * cols + j)
    first = windows.argmax(-1)  # numpy's argmax takes the first maximum
    return windows.max(-1), np.take_along_axis(
        np.broadcast_to(index, windows.shape), first[..., None], -1
    )[..., 0]


def ave_pool(x, k, s):
    """AVE pooling k x k / s without padding: the window means."""
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(k):
        for j in range(k):
            out += x[:, :, i : i + s * oh : s, j : j + s * ow : s]
    return out / (k * k)


def unpool(x, mask, size):
    """The fork's Unpooling: zeros of (N, C, size, size), then out[n, c, mask[i]] = x[n, c, i]
    (a batch-1 mask serves every sample)."""
    n, c = x.shape[:2]
    mask = np.broadcast_to(mask, x.shape).reshape(n, c, -1).astype(np.int64)
    out = np.zeros((n, c, size * size))
    np.put_along_axis(out, mask, x.reshape(n, c, -1), -1)
    return out.reshape(n, c, size, size)


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def forward(layers, blobs, inputs, replace=None):
    """{blob: float64 array} after running `layers` (authors_format LayerParameters, in order)
    with weights `blobs` ({layer name: [arrays]}) on `inputs` ({blob: array}). `replace`
    ({blob: array}) takes the place of those blobs once computed (their own values stay as
    'own:<blob>'): e.g. another net's pooling switches, which float32 rounding can move at
    near-ties."""
    replace = replace or {}
    v = {k: np.asarray(a, np.float64) for k, a in inputs.items()}
    for layer in layers:
        t, bottoms, tops = layer.type, [v[b] for b in layer.bottom], list(layer.top)
        params = [np.asarray(a, np.float64) for a in blobs.get(layer.name, [])]
        if t == "Convolution":
            p = layer.convolution_param
            out = [conv(bottoms[0], params[0], params[1], p.pad, p.stride)]
        elif t == "Deconvolution":
            out = [deconv(bottoms[0], params[0], params[1], layer.convolution_param.pad)]
        elif t == "InnerProduct":
            x = bottoms[0].reshape(len(bottoms[0]), -1)
            out = [x @ params[0].T + params[1]]
        elif t == "ReLU":
            out = [np.maximum(bottoms[0], 0)]
        elif t == "Pooling":
            p = layer.pooling_param
            if p.pool == authors_format.POOL_MAX:
                out = list(max_pool(bottoms[0], p.kernel_size, p.stride))[: len(tops)]
            else:
                out = [ave_pool(bottoms[0], p.kernel_size, p.stride)]
        elif t == "Scale":  # the fork's, with scale_factor: y = factor * x
            out = [bottoms[0] * layer.scale_param.scale_factor]
        elif t == "Eltwise":
            assert layer.eltwise_param.operation == authors_format.ELTWISE_PROD
            out = [bottoms[0] * bottoms[1]]
        elif t == "Softmax":
            out = [softmax(bottoms[0])]
        elif t == "Sigmoid":
            out = [1 / (1 + np.exp(-bottoms[0]))]
        elif t == "Reshape":
            dims = [d or bottoms[0].shape[i] for i, d in enumerate(layer.reshape_param.shape.dim)]
            out = [bottoms[0].reshape(dims)]
        elif t == "LinearSum":  # z[n, c] = sum_p X[n, c, p] att[n, 0, p]
            x, att = bottoms
            out = [(x.reshape(x.shape[0], x.shape[1], -1) * att.reshape(len(att), 1, -1)).sum(-1)]
        elif t == "FilterSum":  # s[n, 0, p] = sum_c z[n, c] X[n, c, p]
            x, z = bottoms
            out = [(x * z[:, :, None, None]).sum(1, keepdims=True)]
        elif t == "Unpooling":
            out = [unpool(bottoms[0], bottoms[1], layer.unpooling_param.unpool_size)]
        elif t == "Dropout":  # TEST phase
            out = [bottoms[0]]
        else:
            raise ValueError("reference: no semantics for layer %s (%s)" % (layer.name, t))
        v.update(zip(tops, out))
        for top in set(tops) & set(replace):
            v["own:" + top], v[top] = v[top], np.asarray(replace[top], np.float64)
    return v
