"""Custom Caffe layers: AttentionPool (Eq. 5), Densify (Eq. 7), the unpooling (the stock-layer
construction of transfernet.nets.unpool, its UnpoolConstants, and the reference Unpool layer
with its numpy scatter/gather, the oracle), param_str parsing.

Every layer runs in a real caffe.Net. A Python exception raised in a layer's setup/reshape
surfaces unchanged from caffe.Net(...); one raised in forward surfaces from net.forward().
"""

import numpy as np
import pytest
import unpool
from caffe import NetSpec
from caffe import layers as L
from caffe import params as P
from gradcheck import check_gradients, check_net_gradients, net_from_prototxt, python_layer_net
from layer_params import REQUIRED, parse_params

from transfernet import nets


def uniform(rng, *shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


def attention_inputs(rng, na, n, d, h, w):
    """A (na, d, h, w) and a softmax-normalised alpha (n, 1, h, w)."""
    logits = rng.normal(size=(n, h * w))
    alpha = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return uniform(rng, na, d, h, w), alpha.reshape(n, 1, h, w).astype(np.float32)


# -- param_str parsing -----------------------------------------------------------------

DEFAULTS = {
    "source": REQUIRED,
    "fraction": 0.5,
    "crop": 320,
    "mirror": True,
    "mean": [104.0, 117.0, 123.0],
    "target": None,
}


def test_parse_params_fills_defaults_and_converts_int_to_float():
    params = parse_params("Data", ' {"source": "a", "fraction": 1, "target": 3} ', DEFAULTS)
    assert params == {
        "source": "a",
        "fraction": 1.0,
        "crop": 320,
        "mirror": True,
        "mean": [104.0, 117.0, 123.0],
        "target": 3,
    }
    assert type(params["fraction"]) is float
    params["mean"].append(0.0)
    assert DEFAULTS["mean"] == [104.0, 117.0, 123.0]


def test_parse_params_empty_means_no_keys():
    assert parse_params("L", "", {"k": 1}) == {"k": 1}
    assert parse_params("L", "  \n", {}) == {}


@pytest.mark.parametrize(
    "param_str, fragment",
    [
        ("{source: 1}", "expected a JSON object"),
        ("[1, 2]", "expected a JSON object, got [1, 2]"),
        ('{"source": "a", "crops": 3}', "unknown key(s) 'crops'"),
        ('{"fraction": 0.1}', "missing required key(s) 'source'"),
        ('{"source": "a", "crop": 320.5}', "'crop' must be an integer"),
        ('{"source": "a", "crop": true}', "'crop' must be an integer"),
        ('{"source": "a", "mirror": 1}', "'mirror' must be a boolean"),
        ('{"source": "a", "mean": 104}', "'mean' must be a list"),
        ('{"source": "a", "fraction": "0.5"}', "'fraction' must be a number"),
    ],
)
def test_parse_params_rejects(param_str, fragment):
    class SomeLayer:
        pass

    with pytest.raises(ValueError) as info:
        parse_params(SomeLayer(), param_str, DEFAULTS)
    assert str(info.value).startswith("SomeLayer param_str: ")
    assert fragment in str(info.value)


# -- values against an independent numpy computation -----------------------------------

ATTENTION_PROTOTXT = """
layer { name: "A" type: "Input" top: "A" input_param { shape { %s } } }
layer { name: "alpha" type: "Input" top: "alpha" input_param { shape { %s } } }
layer { name: "pool" type: "Python" bottom: "A" bottom: "alpha" top: "z"
        python_param { module: "attention_ops" layer: "AttentionPool" } }
layer { name: "densify" type: "Python" bottom: "A" bottom: "z" top: "s"
        python_param { module: "attention_ops" layer: "Densify" param_str: "{}" } }
"""


def dims(shape):
    return " ".join("dim: %d" % d for d in shape)


@pytest.mark.parametrize("na, n", [(2, 2), (1, 3)])
def test_attention_pool_and_densify_values(na, n):
    d, h, w = 5, 3, 4
    A, alpha = attention_inputs(np.random.RandomState(1), na, n, d, h, w)
    net = net_from_prototxt(ATTENTION_PROTOTXT % (dims(A.shape), dims(alpha.shape)))
    net.blobs["A"].data[...] = A
    net.blobs["alpha"].data[...] = alpha
    net.forward()
    # Paper notation: per sample A is an M x D matrix (rows = positions).
    A_md = np.broadcast_to(A.reshape(na, d, h * w).transpose(0, 2, 1), (n, h * w, d))
    z = np.einsum("nmd,nm->nd", A_md.astype(np.float64), alpha.reshape(n, h * w))
    s = np.einsum("nmd,nd->nm", A_md.astype(np.float64), z)
    assert net.blobs["z"].data.shape == (n, d)
    assert net.blobs["s"].data.shape == (n, 1, h, w)
    np.testing.assert_allclose(net.blobs["z"].data, z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.blobs["s"].data, s.reshape(n, 1, h, w), rtol=1e-5, atol=1e-6)


def test_attention_pool_accepts_flat_alpha():
    A, alpha = attention_inputs(np.random.RandomState(2), 2, 2, 3, 2, 3)
    flat = python_layer_net(
        "attention_ops", "AttentionPool", {"A": A, "alpha": alpha.reshape(2, 6)}
    )
    image = python_layer_net("attention_ops", "AttentionPool", {"A": A, "alpha": alpha})
    np.testing.assert_array_equal(flat.blobs["top"].data, image.blobs["top"].data)


def window_argmax(x, k):
    """Flat in-plane index of each k x k / stride k window's maximum (windows clipped at the
    border, as Caffe's CEIL rounding makes them), and the maximum itself."""
    n, c, height, width = x.shape
    ph, pw = -(-height // k), -(-width // k)
    padded = np.full((n, c, ph * k, pw * k), -np.inf)
    padded[:, :, :height, :width] = x
    windows = (
        padded.reshape(n, c, ph, k, pw, k).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ph, pw, k * k)
    )
    first = windows.argmax(axis=-1)  # the first maximum in raster order within the window
    rows = np.arange(ph)[:, None] * k + first // k
    cols = np.arange(pw)[None, :] * k + first % k
    return rows * width + cols, windows.max(axis=-1)


POOL_UNPOOL_PROTOTXT = """
layer { name: "x" type: "Input" top: "x" input_param { shape { %s } } }
layer { name: "pool" type: "Pooling" bottom: "x" top: "pooled" top: "mask"
        pooling_param { pool: MAX kernel_size: %d stride: %d } }
layer { name: "unpool" type: "Python" bottom: "pooled" bottom: "mask" bottom: "x" top: "up"
        python_param { module: "unpool" layer: "Unpool" } }
"""


@pytest.mark.parametrize("shape, k", [((2, 3, 8, 6), 2), ((1, 2, 7, 7), 2), ((2, 1, 5, 9), 3)])
def test_unpool_of_pool_puts_maxima_at_their_argmax(shape, k):
    x = np.random.RandomState(3).permutation(np.prod(shape)).reshape(shape).astype(np.float32)
    net = net_from_prototxt(POOL_UNPOOL_PROTOTXT % (dims(shape), k, k))
    net.blobs["x"].data[...] = x
    net.forward()
    index, maximum = window_argmax(x, k)
    np.testing.assert_array_equal(net.blobs["mask"].data, index)
    np.testing.assert_array_equal(net.blobs["pooled"].data, maximum)
    expected = np.zeros(shape, np.float32)
    for n, c in np.ndindex(*shape[:2]):
        expected[n, c].flat[index[n, c].ravel()] = maximum[n, c].ravel()
    up = net.blobs["up"].data
    assert up.shape == shape
    np.testing.assert_array_equal(up, expected)


def test_unpool_broadcasts_mask_batch_one():
    rng = np.random.RandomState(4)
    x = uniform(rng, 3, 2, 2, 2)
    mask = np.array([[[[1, 3], [8, 15]], [[0, 6], [9, 14]]]], np.float32)  # 4x4 planes
    net = python_layer_net(
        "unpool", "Unpool", {"x": x, "mask": mask, "ref": np.zeros((1, 1, 4, 4))}
    )
    up = net.blobs["top"].data.reshape(3, 2, 16)
    expected = np.zeros((3, 2, 16), np.float32)
    for c in range(2):
        expected[:, c, mask[0, c].ravel().astype(int)] = x[:, c].reshape(3, 4)
    np.testing.assert_array_equal(up, expected)


def stock_unpool_net(pre_shape, labels=None):
    """Real net: pre (Input) -> 2x2/2 MAX pooling (pooled, mask) and x (Input x_in plus a
    learnable zero Bias, so x gets a gradient without force_backward) -> nets.unpool -> up
    -> out (identity Power with loss_weight 1: Caffe back-propagates only into losses).
    labels=K: the deploy form, x (K, C, h, w) against the batch-1 switches of pre."""
    n = NetSpec()
    n.pre = L.Input(shape=dict(dim=list(pre_shape)))
    n.pooled, n.mask = L.Pooling(n.pre, pool=P.Pooling.MAX, kernel_size=2, stride=2, ntop=2)
    pooled = [-(-side // 2) for side in pre_shape[2:]]
    n.x_in = L.Input(shape=dict(dim=[labels or pre_shape[0], pre_shape[1]] + pooled))
    n.x = L.Bias(n.x_in, num_axes=0, param=[dict(lr_mult=1)])
    nets.unpool(n, "up", n.x, n.mask, n.pre, pre_shape[2:], broadcast=labels is not None)
    n.out = L.Power(n.up, loss_weight=1)
    return net_from_prototxt(str(n.to_proto()))


def relu_with_ties(rng, shape):
    """Post-ReLU-like values with many ties: about half zeros, the rest in {1, 2}, so most
    windows hold several equal maxima and the first in raster order must win."""
    return np.maximum(rng.randint(-2, 3, shape), 0).astype(np.float32)


def reference_unpool(x, mask, out_shape):
    """The numpy scatter (unpool.unpool) and the index it gathers the gradient with."""
    index = unpool.switch_indices(
        mask,
        unpool.switch_offsets(x.shape[0], x.shape[1], out_shape[2:]),
        np.empty(x.shape, np.int64),
    )
    return unpool.unpool(x, index, np.empty(out_shape, np.float32)), index


@pytest.mark.parametrize(
    "pre_shape, labels",
    [
        ((2, 64, 320, 320), None),  # unpool1 of the paper's joint net at batch 2
        ((1, 64, 320, 320), 3),  # ... and of its deploy net with K = 3 labels
        ((2, 3, 7, 9), None),
        ((1, 2, 5, 3), 2),
        ((2, 4, 8, 6), None),
        ((1, 1, 2, 2), None),
    ],
)
def test_stock_unpool_equals_numpy_scatter_and_gather(pre_shape, labels):
    rng = np.random.RandomState(11)
    net = stock_unpool_net(pre_shape, labels)
    pre = relu_with_ties(rng, pre_shape)
    x = rng.uniform(-1, 1, net.blobs["x_in"].data.shape).astype(np.float32)
    net.blobs["pre"].data[...] = pre
    net.blobs["x_in"].data[...] = x
    net.forward()
    mask = net.blobs["mask"].data
    if pre.size < 1e4:  # BVLC's switches: the first maximum in raster order
        np.testing.assert_array_equal(mask, window_argmax(pre, 2)[0])
    up = net.blobs["up"].data
    expected, index = reference_unpool(x, mask, (x.shape[0],) + pre_shape[1:])
    assert up.shape == expected.shape
    np.testing.assert_array_equal(up, expected)
    assert np.count_nonzero(expected) > 0.9 * x.size
    dtop = rng.uniform(-1, 1, up.shape).astype(np.float32)
    net.blobs["out"].diff[...] = dtop
    net.backward()
    gathered = unpool.unpool_backward(dtop, index, np.empty(x.shape, np.float32))
    np.testing.assert_array_equal(net.blobs["x"].diff, gathered)


@pytest.mark.parametrize(
    "pre_shape, labels",
    [((2, 2, 6, 4), None), ((1, 3, 7, 7), None), ((3, 1, 5, 3), None), ((1, 2, 5, 5), 3)],
)
def test_stock_unpool_gradients(pre_shape, labels):
    """Switches of distinct values (a permutation); odd sizes and the K-label form."""
    rng = np.random.RandomState(7)
    net = stock_unpool_net(pre_shape, labels)
    net.blobs["pre"].data[...] = rng.permutation(np.prod(pre_shape)).reshape(pre_shape)
    net.blobs["x_in"].data[...] = uniform(rng, *net.blobs["x_in"].data.shape)
    check_net_gradients(net, "out", {"x_in": "x"}, "unpool")


def test_stock_unpool_uses_only_stock_layers_and_constants():
    net = stock_unpool_net((1, 2, 4, 4), labels=2)
    python = [layer for layer in net.layers if layer.type == "Python"]
    assert [type(layer).__name__ for layer in python] == ["UnpoolConstants"]


def unpool_constants_net(x_shape, ref_shape):
    return python_layer_net(
        "unpool",
        "UnpoolConstants",
        {"x": np.zeros(x_shape), "ref": np.zeros(ref_shape)},
        tops=("positions", "zeros"),
    )


def test_unpool_constants_values():
    net = unpool_constants_net((2, 3, 2, 3), (1, 1, 4, 5))  # 4x5 pooled 2x2/2 is 2x3
    positions = -net.blobs["positions"].data
    assert positions.shape == net.blobs["zeros"].data.shape == (2, 3, 2, 3, 2)
    # top-row columns 0..5 of the windows of rows 0 and 2 in a plane 5 wide
    np.testing.assert_array_equal(
        positions[1, 2].reshape(2, 6), [[0, 1, 2, 3, 4, 5], [10, 11, 12, 13, 14, 15]]
    )
    assert (positions == positions[:1, :1]).all() and not net.blobs["zeros"].data.any()


def test_unpool_constants_written_only_when_the_shape_needs_it():
    """K going down and back up within what was written: Caffe's blob keeps the values, the
    layer writes nothing (a sentinel survives); more samples or another plane: rewritten."""
    net = unpool_constants_net((3, 2, 2, 2), (1, 1, 4, 4))
    expected = net.blobs["positions"].data[0].copy()

    def resized(batch, ref=(1, 1, 4, 4), plane=(2, 2, 2)):
        net.blobs["x"].reshape(batch, *plane)
        net.blobs["ref"].reshape(*ref)
        net.forward()
        return net.blobs["positions"].data

    resized(3)[2, 0, 0, 0, 0] = 99  # a sentinel in the last sample
    for batch in (1, 2, 3):
        positions = resized(batch)
        np.testing.assert_array_equal(positions[:1], expected[None])
    assert positions[2, 0, 0, 0, 0] == 99
    assert (resized(4) == expected).all()  # grown: rewritten
    assert (-resized(4, (1, 1, 3, 4)) == unpool.slot_positions(3, 4)).all()  # odd plane
    assert not net.blobs["zeros"].data.any()


# -- gradients -------------------------------------------------------------------------


@pytest.mark.parametrize("na, n, d, h, w", [(1, 1, 3, 2, 2), (2, 2, 4, 3, 2), (1, 3, 3, 2, 3)])
def test_attention_pool_gradients(na, n, d, h, w):
    A, alpha = attention_inputs(np.random.RandomState(5), na, n, d, h, w)
    check_gradients(
        "attention_ops", "AttentionPool", {"A": A, "alpha": alpha * h * w}, ["A", "alpha"]
    )


@pytest.mark.parametrize("na, n, d, h, w", [(1, 1, 3, 2, 2), (2, 2, 4, 3, 2), (1, 3, 3, 2, 3)])
def test_densify_gradients(na, n, d, h, w):
    rng = np.random.RandomState(6)
    check_gradients(
        "attention_ops",
        "Densify",
        {"A": uniform(rng, na, d, h, w), "z": uniform(rng, n, d)},
        ["A", "z"],
    )


@pytest.mark.parametrize("shape", [(2, 2, 6, 4), (1, 3, 7, 7), (3, 1, 5, 3)])
def test_unpool_gradients(shape):
    """Pooling switches from window_argmax (2x2 / 2, CEIL sizes), odd sizes included."""
    rng = np.random.RandomState(7)
    mask, pooled = window_argmax(rng.permutation(np.prod(shape)).reshape(shape), 2)
    ref = np.zeros((1, 1) + shape[2:], np.float32)
    check_gradients(
        "unpool", "Unpool", {"x": uniform(rng, *pooled.shape), "mask": mask, "ref": ref}, ["x"]
    )


def test_unpool_gradients_with_broadcast_mask():
    rng = np.random.RandomState(8)
    mask, pooled = window_argmax(rng.permutation(50).reshape(1, 2, 5, 5), 2)
    check_gradients(
        "unpool",
        "Unpool",
        {"x": uniform(rng, 3, 2, 3, 3), "mask": mask, "ref": np.zeros((1, 1, 5, 5))},
        ["x"],
    )


PROPAGATE_DOWN_PROTOTXT = """
layer { name: "A" type: "Input" top: "A" input_param { shape { %s } } }
layer { name: "alpha" type: "Input" top: "alpha" input_param { shape { %s } } }
layer { name: "A_scaled" type: "Scale" bottom: "A" top: "A_scaled" }
layer { name: "alpha_scaled" type: "Scale" bottom: "alpha" top: "alpha_scaled" }
layer { name: "pool" type: "Python" bottom: "A_scaled" bottom: "alpha_scaled" top: "z"
        propagate_down: %s propagate_down: %s loss_weight: 1
        python_param { module: "attention_ops" layer: "AttentionPool" } }
"""


@pytest.mark.parametrize("down_A, down_alpha", [(False, True), (True, False)])
def test_attention_pool_honours_propagate_down(down_A, down_alpha):
    """No force_backward: learnable Scale layers below and loss_weight on z make both
    bottoms want gradients unless propagate_down says otherwise."""
    A, alpha = attention_inputs(np.random.RandomState(9), 1, 2, 3, 2, 2)
    net = net_from_prototxt(
        PROPAGATE_DOWN_PROTOTXT
        % (dims(A.shape), dims(alpha.shape), str(down_A).lower(), str(down_alpha).lower())
    )
    net.blobs["A"].data[...] = A
    net.blobs["alpha"].data[...] = alpha
    net.forward()
    for name in ("A_scaled", "alpha_scaled"):
        net.blobs[name].diff[...] = 7
    net.blobs["z"].diff[...] = 1
    net.backward()
    # With dz = 1: dA[d, m] = sum_n alpha[n, m], dalpha[n, m] = sum_d A[d, m].
    expected_A = np.broadcast_to(alpha.sum(axis=0), A.shape) if down_A else np.full(A.shape, 7)
    expected_alpha = (
        np.broadcast_to(A.sum(axis=1), alpha.shape) if down_alpha else np.full(alpha.shape, 7)
    )
    np.testing.assert_allclose(net.blobs["A_scaled"].diff, expected_A, rtol=1e-6)
    np.testing.assert_allclose(net.blobs["alpha_scaled"].diff, expected_alpha, rtol=1e-6)


# -- errors name the layer -------------------------------------------------------------


def attention_bottoms(na=2, n=2, d=3, h=2, w=2):
    return dict(zip(("A", "alpha"), attention_inputs(np.random.RandomState(10), na, n, d, h, w)))


@pytest.mark.parametrize("layer", ["AttentionPool", "Densify"])
@pytest.mark.parametrize(
    "param_str, fragment",
    [
        ("not json", "param_str: expected a JSON object"),
        ('{"scale": 2}', "param_str: unknown key(s) 'scale'; expected keys: none"),
    ],
)
def test_attention_layers_reject_bad_param_str(layer, param_str, fragment):
    bottoms = attention_bottoms()
    if layer == "Densify":
        bottoms = {"A": bottoms["A"], "z": np.zeros((2, 3))}
    with pytest.raises(ValueError, match="^%s " % layer) as info:
        python_layer_net("attention_ops", layer, bottoms, param_str=param_str)
    assert fragment in str(info.value)


def test_unpool_rejects_unknown_key():
    with pytest.raises(ValueError, match=r"^Unpool param_str: unknown key\(s\) 'size'"):
        python_layer_net(
            "unpool",
            "Unpool",
            {
                "x": np.zeros((1, 1, 2, 2)),
                "mask": np.zeros((1, 1, 2, 2)),
                "ref": np.zeros((1, 1, 4, 4)),
            },
            param_str='{"size": 4}',
        )


@pytest.mark.parametrize(
    "layer, bottoms, fragment",
    [
        (
            "AttentionPool",
            {"A": np.zeros((2, 3, 2, 2)), "alpha": np.zeros((2, 1, 2, 3))},
            "AttentionPool: bottom alpha must have shape (2, 1, 2, 2) or (2, 4) for A of shape "
            "(2, 3, 2, 2), got (2, 1, 2, 3)",
        ),
        (
            "AttentionPool",
            {"A": np.zeros((2, 3, 2, 2)), "alpha": np.zeros((3, 4))},
            "AttentionPool: A's batch must be 1 or equal alpha's batch 3, "
            "got A of shape (2, 3, 2, 2)",
        ),
        (
            "AttentionPool",
            {"A": np.zeros((2, 3, 4)), "alpha": np.zeros((2, 4))},
            "AttentionPool: bottom A must be 4-D (N, D, H, W), got shape (2, 3, 4)",
        ),
        (
            "AttentionPool",
            {"A": np.zeros((2, 3, 2, 2))},
            "AttentionPool: expected 2 bottoms and 1 top, got 1 bottoms and 1 tops",
        ),
        (
            "Densify",
            {"A": np.zeros((1, 3, 2, 2)), "z": np.zeros((2, 4))},
            "Densify: bottom z must have shape (2, 3) for A of shape (1, 3, 2, 2), got (2, 4)",
        ),
        (
            "Unpool",
            {
                "x": np.zeros((2, 3, 2, 2)),
                "mask": np.zeros((2, 2, 2, 2)),
                "ref": np.zeros((1, 1, 4, 4)),
            },
            "Unpool: mask must have shape (2, 3, 2, 2) or (1, 3, 2, 2) like x, got (2, 2, 2, 2)",
        ),
        (
            "Unpool",
            {
                "x": np.zeros((1, 1, 3, 3)),
                "mask": np.zeros((1, 1, 3, 3)),
                "ref": np.zeros((1, 1, 2, 4)),
            },
            "Unpool: ref's H x W must be at least x's 3 x 3, got ref (1, 1, 2, 4)",
        ),
        (
            "Unpool",
            {"x": np.zeros((1, 1, 2, 2)), "mask": np.zeros((1, 1, 2, 2))},
            "Unpool: expected 3 bottoms (x, mask, ref) and 1 top, got 2 bottoms and 1 tops",
        ),
    ],
)
def test_bad_bottoms_raise_naming_the_layer(layer, bottoms, fragment):
    module = "unpool" if layer == "Unpool" else "attention_ops"
    with pytest.raises(ValueError) as info:
        python_layer_net(module, layer, bottoms)
    assert str(info.value) == fragment


@pytest.mark.parametrize(
    "bottoms, fragment",
    [
        (
            {"x": np.zeros((1, 2, 3, 3)), "ref": np.zeros((1, 2, 4, 4))},
            "UnpoolConstants: x's h x w must be 2 x 2 (ref's 4 x 4 pooled 2x2/2), "
            "got x (1, 2, 3, 3)",
        ),
        (
            {"x": np.zeros((1, 2, 3)), "ref": np.zeros((1, 2, 4, 4))},
            "UnpoolConstants: x and ref must be 4-D (N, C, H, W), got x (1, 2, 3) and ref "
            "(1, 2, 4, 4)",
        ),
        (
            {"x": np.zeros((1, 2, 2, 2))},
            "UnpoolConstants: expected 2 bottoms (x, ref) and 2 tops, got 1 bottoms and 2 tops",
        ),
    ],
)
def test_unpool_constants_reject_bad_bottoms(bottoms, fragment):
    with pytest.raises(ValueError) as info:
        python_layer_net("unpool", "UnpoolConstants", bottoms, tops=("positions", "zeros"))
    assert str(info.value) == fragment
    with pytest.raises(ValueError, match=r"^UnpoolConstants param_str: unknown key\(s\) 'w'"):
        python_layer_net(
            "unpool",
            "UnpoolConstants",
            {"x": np.zeros((1, 1, 2, 2)), "ref": np.zeros((1, 1, 4, 4))},
            tops=("positions", "zeros"),
            param_str='{"w": 4}',
        )


def test_unpool_rejects_switch_outside_ref_plane():
    mask = np.array([[[[0, 3], [8, 16]]]], np.float32)  # 16 is outside a 4x4 plane
    with pytest.raises(ValueError) as info:
        python_layer_net(
            "unpool",
            "Unpool",
            {"x": np.ones((1, 1, 2, 2)), "mask": mask, "ref": np.zeros((1, 1, 4, 4))},
        )
    assert str(info.value) == (
        "Unpool: mask values must lie in [0, 16) for ref's H x W (4, 4), got [0, 16]"
    )
