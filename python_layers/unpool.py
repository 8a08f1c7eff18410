"""Unpooling with max-pooling switches (the DeconvNet decoder of TransferNet, Sec. 4.3).

BVLC Caffe's MAX Pooling with a second top writes the switch mask: per pooled unit the flat
index h*W + w of its arg-max inside the (n, c) plane of the pooling input (H x W). Unpooling
puts each pooled value back there and zeroes every other position:

    forward:   top[n, c].flat[mask[n, c, i]] = x[n, c, i]      top elsewhere 0
    backward:  dx[n, c, i] = dtop[n, c].flat[mask[n, c, i]]

The networks unpool with stock Caffe layers (transfernet.nets.unpool); the one thing those
cannot make is the constant they compare the switches with, which UnpoolConstants emits.
The numpy scatter/gather below (and the Unpool layer around it) is the reference: the tests'
oracle and the Python-layer variant the bench measures the stock construction against.
The output size H x W is taken from the pre-pooling blob, so any size works (odd ones too:
7x7 pooled 2x2/2 with CEIL rounding is 4x4 and unpools back to 7x7).
"""

import caffe
import numpy as np
from layer_params import parse_params, report_errors


def switch_offsets(batch, channels, out_hw):
    """Start (n*C + c)*H*W of every (n, c) plane of an (batch, C, H, W) array, shaped
    (batch, C, 1, 1) to broadcast over the switches."""
    plane = out_hw[0] * out_hw[1]
    return (np.arange(batch * channels, dtype=np.int64) * plane).reshape(batch, channels, 1, 1)


def switch_indices(mask, offsets, out):
    """Fill the int64 array `out` (N, C, h, w) with the flat indices offsets + mask into an
    (N, C, H, W) array; mask (N or 1, C, h, w) holds the switches (floats, as Caffe writes
    them), offsets come from switch_offsets. Returns out."""
    out[...] = mask
    out += offsets
    return out


def unpool(x, index, out):
    """Scatter x (N, C, h, w) to the flat indices `index` (switch_indices) of `out`
    (N, C, H, W), zeroing every other position; returns out."""
    out[...] = 0
    out.reshape(-1)[index.reshape(-1)] = x.reshape(-1)
    return out


def unpool_backward(dtop, index, out):
    """Gather dx (N, C, h, w) = dtop.flat[index] into `out`; returns out."""
    np.take(dtop.reshape(-1), index.reshape(-1), out=out.reshape(-1), mode="clip")
    return out


@report_errors
class UnpoolConstants(caffe.Layer):
    """The constants of the stock-layer unpooling (transfernet.nets.unpool).

    Bottoms: x (N, C, h, w) and ref (any, any, H, W), both read for their shapes only, with
    h = ceil(H / 2), w = ceil(W / 2) (2x2/2 pooling, Caffe's CEIL rounding). Tops, both
    (N, C, h, w, 2): minus the flat index (2i) * W + 2j + b of column 2j + b in the top row
    of pooled unit (i, j)'s window (slot_positions), and zeros. No param_str keys.

    Written in reshape only when the shape needs it, never touched in forward or backward,
    so a GPU net copies them to the device once, not every iteration. Every sample holds the
    same values: when only N shrinks or grows back (a deploy net alternating between K
    labels), what Caffe's blobs keep within their capacity is still right and nothing is
    written; N beyond the largest written, or another plane shape, rewrites them. No
    gradient: the generator sets propagate_down false, so Caffe never calls backward.
    """

    def setup(self, bottom, top):
        parse_params(self, self.param_str, {})
        if len(bottom) != 2 or len(top) != 2:
            raise ValueError(
                "UnpoolConstants: expected 2 bottoms (x, ref) and 2 tops, got %d "
                "bottoms and %d tops" % (len(bottom), len(top))
            )
        self.plane = None
        self.written = 0

    def reshape(self, bottom, top):
        x, ref = tuple(bottom[0].shape), tuple(bottom[1].shape)
        if len(x) != 4 or len(ref) != 4:
            raise ValueError(
                "UnpoolConstants: x and ref must be 4-D (N, C, H, W), got x %s "
                "and ref %s" % (x, ref)
            )
        pooled = (-(-ref[2] // 2), -(-ref[3] // 2))
        if x[2:] != pooled:
            raise ValueError(
                "UnpoolConstants: x's h x w must be %d x %d (ref's %d x %d "
                "pooled 2x2/2), got x %s" % (pooled + ref[2:] + (x,))
            )
        for i in range(2):
            top[i].reshape(*(x + (2,)))
        plane = (x[1],) + ref[2:]
        if plane != self.plane or x[0] > self.written:
            top[0].data[...] = -slot_positions(ref[2], ref[3])
            top[1].data[...] = 0
            self.plane, self.written = plane, x[0]

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        for i, down in enumerate(propagate_down):
            if down:
                bottom[i].diff[...] = 0


def slot_positions(height, width):
    """(h, w, 2) float32: the flat index (2i) * width + 2j + b of column 2j + b in the top row
    of pooled unit (i, j)'s 2x2 window (h, w = ceil(height / 2), ceil(width / 2))."""
    rows = 2 * np.arange(-(-height // 2)) * width
    cols = np.arange(2 * -(-width // 2)).reshape(-1, 2)
    return (rows[:, None, None] + cols[None]).astype(np.float32)


@report_errors
class Unpool(caffe.Layer):
    """Bottoms: x (N, C, h, w), mask (N or 1, C, h, w), ref (any, any, H, W); top (N, C, H, W).

    No param_str keys. Only x is differentiable; mask and ref get zero gradients. reshape
    reads blob shapes only (ref's data is never touched: in a GPU net reading it would copy
    it to the host). The flat switch indices live in a buffer that, like a Caffe blob, only
    grows (a deploy net alternating between K labels does not reallocate); forward fills
    them from the mask and scatters, backward gathers with the same indices (Caffe always
    runs forward before backward).
    """

    def setup(self, bottom, top):
        parse_params(self, self.param_str, {})
        if len(bottom) != 3 or len(top) != 1:
            raise ValueError(
                "Unpool: expected 3 bottoms (x, mask, ref) and 1 top, got %d "
                "bottoms and %d tops" % (len(bottom), len(top))
            )
        self.buffer = np.empty(0, np.int64)
        self.shapes = self.index = self.offsets = None

    def reshape(self, bottom, top):
        x, mask, ref = (tuple(bottom[i].shape) for i in range(3))
        if len(x) != 4 or len(ref) != 4:
            raise ValueError(
                "Unpool: x and ref must be 4-D (N, C, H, W), got x %s and ref %s" % (x, ref)
            )
        if mask not in (x, (1,) + x[1:]):
            raise ValueError(
                "Unpool: mask must have shape %s or %s like x, got %s" % (x, (1,) + x[1:], mask)
            )
        if ref[2] < x[2] or ref[3] < x[3]:
            raise ValueError(
                "Unpool: ref's H x W must be at least x's %d x %d, got ref %s" % (x[2], x[3], ref)
            )
        top[0].reshape(*(x[:2] + ref[2:]))
        if (x, ref[2:]) != self.shapes:
            self.shapes = (x, ref[2:])
            size = int(np.prod(x))
            if self.buffer.size < size:
                self.buffer = np.empty(size, np.int64)
            self.index = self.buffer[:size].reshape(x)
            self.offsets = switch_offsets(x[0], x[1], ref[2:])

    def forward(self, bottom, top):
        mask, out = bottom[1].data, top[0].data
        plane = out.shape[2] * out.shape[3]
        if mask.size and (mask.min() < 0 or mask.max() >= plane):
            raise ValueError(
                "Unpool: mask values must lie in [0, %d) for ref's H x W %s, got "
                "[%g, %g]" % (plane, out.shape[2:], mask.min(), mask.max())
            )
        switch_indices(mask, self.offsets, self.index)
        unpool(bottom[0].data, self.index, out)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            unpool_backward(top[0].diff, self.index, bottom[0].diff)
        for i in (1, 2):
            if propagate_down[i]:
                bottom[i].diff[...] = 0
