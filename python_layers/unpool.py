"""Unpooling with max-pooling switches (the DeconvNet decoder of TransferNet, Sec. 4.3).

BVLC Caffe's MAX Pooling with a second top writes the switch mask: per pooled unit the flat
index h*W + w of its arg-max inside the (n, c) plane of the pooling input (H x W). Unpooling
puts each pooled value back there and zeroes every other position:

    forward:   top[n, c].flat[mask[n, c, i]] = x[n, c, i]      top elsewhere 0
    backward:  dx[n, c, i] = dtop[n, c].flat[mask[n, c, i]]

The output size H x W is taken from a third bottom, the pre-pooling blob, so any size works
(odd ones too: 7x7 pooled 2x2/2 with CEIL rounding is 4x4 and unpools back to 7x7).
With overlapping pooling windows two units may share a switch; they then hold the same value,
and the backward pass (like the authors' layer) hands the shared gradient to both.
"""
import numpy as np

import caffe
from layer_params import parse_params


def switch_indices(mask, batch, out_hw):
    """Flat indices into an (batch, C, H, W) array: (n*C + c)*H*W + mask[n, c, i].

    mask (batch or 1, C, h, w) holds the switches (floats, as Caffe writes them).
    """
    channels = mask.shape[1]
    plane = out_hw[0] * out_hw[1]
    offsets = np.arange(batch * channels, dtype=np.int64).reshape(batch, channels, 1, 1) * plane
    return offsets + mask.astype(np.int64)


def unpool(x, mask, out_hw, out=None):
    """Scatter x (N, C, h, w) to the switch positions of an (N, C, H, W) array of zeros.

    mask: (N or 1, C, h, w) switches; out_hw: (H, W); out: optional array to fill in place.
    """
    shape = x.shape[:2] + tuple(out_hw)
    if out is None:
        out = np.empty(shape, x.dtype)
    out[...] = 0
    np.put(out, switch_indices(mask, x.shape[0], out_hw), x)
    return out


def unpool_backward(dtop, mask):
    """Gather dx (N, C, h, w) from dtop (N, C, H, W) at the switch positions."""
    return dtop.reshape(-1)[switch_indices(mask, dtop.shape[0], dtop.shape[2:])]


class Unpool(caffe.Layer):
    """Bottoms: x (N, C, h, w), mask (N or 1, C, h, w), ref (any, any, H, W); top (N, C, H, W).

    No param_str keys. Only x is differentiable; mask and ref get zero gradients.
    """

    def setup(self, bottom, top):
        parse_params(self, self.param_str, {})
        if len(bottom) != 3 or len(top) != 1:
            raise ValueError("Unpool: expected 3 bottoms (x, mask, ref) and 1 top, got %d "
                             "bottoms and %d tops" % (len(bottom), len(top)))

    def reshape(self, bottom, top):
        x, mask, ref = (tuple(bottom[i].data.shape) for i in range(3))
        if len(x) != 4 or len(ref) != 4:
            raise ValueError("Unpool: x and ref must be 4-D (N, C, H, W), got x %s and ref %s"
                             % (x, ref))
        if mask not in (x, (1,) + x[1:]):
            raise ValueError("Unpool: mask must have shape %s or %s like x, got %s"
                             % (x, (1,) + x[1:], mask))
        if ref[2] < x[2] or ref[3] < x[3]:
            raise ValueError("Unpool: ref's H x W must be at least x's %d x %d, got ref %s"
                             % (x[2], x[3], ref))
        top[0].reshape(*(x[:2] + ref[2:]))

    def forward(self, bottom, top):
        mask = bottom[1].data
        plane = top[0].data.shape[2] * top[0].data.shape[3]
        if mask.size and (mask.min() < 0 or mask.max() >= plane):
            raise ValueError("Unpool: mask values must lie in [0, %d) for ref's H x W %s, got "
                             "[%g, %g]" % (plane, top[0].data.shape[2:], mask.min(), mask.max()))
        unpool(bottom[0].data, mask, top[0].data.shape[2:], out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = unpool_backward(top[0].diff, bottom[1].data)
        for i in (1, 2):
            if propagate_down[i]:
                bottom[i].diff[...] = 0
