"""Tiny networks with seeded random weights and synthetic images, shared by the network,
baseline, inference and visualisation tests (the `tiny_weights` fixture of conftest.py)."""

import os

import caffe
import cv2
import numpy as np

from transfernet import config, inference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = config.CONFIGS["tiny"]
SEG_MODEL = os.path.join(REPO, TINY.layout.model("seg_deploy"))
CLS_MODEL = os.path.join(REPO, TINY.layout.model("classifier_deploy"))


def randomize(net, seed):
    """He-scaled Gaussian weights and small random biases. conv1_1, feat_embed and deconv5_1
    are scaled up to undo the tiny config's input and feature scaling (feature scale once for
    alpha, twice for s), so that the attention and the segmentation depend on the label. A
    weight shared by two layers is drawn once per layer; the last draw stays."""
    rng = np.random.RandomState(seed)
    for blobs in net.params.values():
        weights = blobs[0].data
        weights[...] = rng.randn(*weights.shape) * np.sqrt(2.0 / np.prod(weights.shape[1:]))
        for bias in list(blobs)[1:]:
            bias.data[...] = rng.randn(*bias.data.shape) * 0.1
    net.params["conv1_1"][0].data[...] /= config.TINY.architecture.input_scale
    if "feat_embed" in net.params:
        net.params["feat_embed"][0].data[...] /= config.TINY.architecture.feature_scale
        net.params["deconv5_1"][0].data[...] /= config.TINY.architecture.feature_scale**2


def calibrate(net, layer):
    """Scale the last layer so that its outputs (their difference for the 2-way softmax)
    have std 2 on a test image: probabilities spread over (0, 1) instead of saturating."""
    side = net.blobs["data"].shape[2]
    net.blobs["data"].data[...] = inference.preprocess(make_image(96, 96, seed=9), side)
    if "label" in net.blobs:
        net.blobs["label"].data[...] = np.eye(net.blobs["label"].shape[1])[2]
    net.forward()
    out = net.blobs[layer].data
    spread = (out[:, 1] - out[:, 0] if layer == "seg_score" else out).std() / 2
    for blob in net.params[layer]:
        blob.data[...] /= spread


def make_weights(folder):
    """{'seg': caffemodel, 'cls': caffemodel} of the tiny deploy nets with seeded random
    weights, saved in `folder`."""
    paths = {}
    for key, model, seed, last in (
        ("seg", SEG_MODEL, 0, "seg_score"),
        ("cls", CLS_MODEL, 1, "fc8_transfer"),
    ):
        net = caffe.Net(model, caffe.TEST)
        randomize(net, seed)
        calibrate(net, last)
        paths[key] = os.path.join(str(folder), key + ".caffemodel")
        net.save(paths[key])
    return paths


def make_image(height, width, seed):
    """A textured BGR image with a few filled shapes (built-in-dataset-like)."""
    rng = np.random.RandomState(seed)
    image = np.full((height, width, 3), rng.randint(0, 256, 3), np.uint8)
    image = cv2.add(image, rng.randint(0, 40, (height, width, 3)).astype(np.uint8))
    for _ in range(3):
        centre = (int(rng.randint(width)), int(rng.randint(height)))
        colour = tuple(int(c) for c in rng.randint(0, 256, 3))
        cv2.circle(image, centre, int(rng.randint(5, max(6, min(height, width) // 3))), colour, -1)
    return image
