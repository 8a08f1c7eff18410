"""The authors' released models on our stock-Caffe nets (transfernet/authors.py, issue 23).

Caffemodels in the authors' format are written here (tests/authors_files.py: their layer names
and types, their parameter messages at their field numbers, random blobs), imported with
tools/import_authors.py, run in the real Caffe through our committed prototxts, and compared
with a float64 numpy forward of the authors' nets written from their layers' semantics
(tests/authors_reference.py). At paper size: one image, two labels, one forward per net.
"""

import os
import types

import authors_files
import authors_reference as reference
import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from tools import import_authors
from transfernet import authors, authors_format, config, inference, nets, weights

PAPER, TINY = config.PAPER, config.TINY
LABELS = [3, 35]  # a VOC class (bird) and a COCO one
# float32 Caffe against float64 numpy: relative to each blob's largest value
TOLERANCE = 1e-5
# Pooling switches that float32 rounding may move: at near-ties only, and very few
TIE_TOLERANCE = 1e-5
MAX_FLIPPED_SWITCHES = 1e-5  # fraction of a pooling's outputs


def layer_infos(net):
    """(name, type, [blob shapes]) of every layer of a NetParameter, in file order (duplicate
    names kept: the fork's deploy net has two layers named soft-att)."""
    return [
        types.SimpleNamespace(
            name=layer.name,
            type=layer.type,
            shapes=[weights.blob_shape(b) for b in layer.blobs],
        )
        for layer in net.layer
    ]


def max_abs(ours, theirs):
    return float(np.abs(np.asarray(ours, np.float64) - theirs).max())


def check_close(name, ours, theirs, figures):
    """Record the max abs difference of a blob and require it within TOLERANCE of its
    largest value."""
    difference = max_abs(ours, theirs)
    figures[name] = difference
    assert np.shape(ours) == np.shape(theirs), name
    assert difference <= TOLERANCE * np.abs(theirs).max(), (name, difference)


def one_hot(labels, count=80):
    return np.eye(count)[np.asarray(labels) - 1][:, :, None, None]


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """The three released files at paper size (one random encoder), the test image as the
    net input, and the reference forward of the shared encoder on it."""
    folder = tmp_path_factory.mktemp("authors_paper")
    rng = np.random.default_rng(23)
    arch = PAPER.architecture
    blobs = authors_files.make_blobs(arch, rng)
    paths = authors_files.write_release(str(folder), arch, blobs, v1_classifier=True)
    image = rng.normal(0, authors_files.PIXEL_STD, (1, 3, arch.crop, arch.crop)).astype(np.float32)
    encoder = authors_files.encoder_layers(arch, masks=True)
    return types.SimpleNamespace(
        folder=folder,
        blobs=blobs,
        paths=paths,
        image=image,
        encoder=reference.forward(encoder, blobs, {"data": image}),
        figures={},
    )


def import_file(path, out, cfg=PAPER):
    args = [path, "--out", out, "--config", cfg.name]
    assert import_authors.main(args) == 0
    return out


def after(layers, name):
    """The layers after the (last) one named `name`."""
    index = max(i for i, layer in enumerate(layers) if layer.name == name)
    return layers[index + 1 :]


def check_switches(net, encoder, figures):
    """Our net's pooling switches against the reference's: the same but for near-ties
    (the two values within TIE_TOLERANCE), at most MAX_FLIPPED_SWITCHES of them."""
    for block in range(1, 5):
        ours, theirs = net.blobs["pool%d_mask" % block].data, encoder["pool%d_mask" % block]
        flipped = np.argwhere(ours != theirs)
        figures["pool%d switches moved" % block] = "%d of %d" % (len(flipped), ours.size)
        assert len(flipped) <= MAX_FLIPPED_SWITCHES * ours.size
        plane = encoder["conv%d_%d" % (block, 2 if block < 3 else 3)]
        for index in map(tuple, flipped):
            a, b = (plane[index[:2]].flat[int(m[index])] for m in (ours, theirs))
            assert abs(a - b) <= TIE_TOLERANCE * max(abs(a), abs(b)), (block, index, a, b)


def test_transfernet_equals_the_authors_deploy_net_at_paper_size(paper, tmp_path):
    """transferNet imported, our committed seg_deploy with it: seg_prob, alpha and s for two
    labels in one forward against the authors' deploy net (deploy.prototxt) run per label.
    The reference decodes with our net's switches, after check_switches has compared them."""
    out = import_file(paper.paths["transferNet"], str(tmp_path / "transferNet.caffemodel"))
    net = inference.load_net(PAPER.layout.model("seg_deploy"), out)
    fg, alpha, s = inference.forward_labels(net, paper.image, LABELS)
    check_switches(net, paper.encoder, paper.figures)
    switches = {"pool%d_mask" % b: net.blobs["pool%d_mask" % b].data for b in range(1, 5)}
    layers = after(authors_files.deploy_layers(PAPER.architecture), "relu5_3")
    theirs = reference.forward(
        layers, paper.blobs, dict(paper.encoder, **switches, **{"cls-label": one_hot(LABELS)})
    )
    figures = paper.figures
    check_close(
        "deploy seg_prob",
        net.blobs["seg_prob"].data,
        reference.softmax(theirs["seg-score"]),
        figures,
    )
    check_close("deploy alpha", alpha, theirs["att"][:, 0], figures)
    check_close("deploy s", s, theirs["filter_sum_map"][:, 0], figures)
    assert theirs["att"].max() < 0.5 and np.ptp(fg) > 0.1  # neither one-hot nor flat
    print("\nequivalence, max abs difference per blob:", paper.figures)


def test_attentionnet_equals_the_authors_stage1_net_at_paper_size(paper, tmp_path):
    """attentionNet imported, our attention_train (Input layers) with it, both labels in one
    batch: alpha, z and the 80 class scores against the authors' stage-1 net."""
    out = import_file(paper.paths["attentionNet"], str(tmp_path / "attentionNet.caffemodel"))
    net = nets.instantiate(nets.attention_train(PAPER, batch=2, input_layers=True), caffe.TEST)
    net.copy_from(out)
    net.blobs["data"].data[...] = paper.image
    net.blobs["label"].data[...] = one_hot(LABELS)[:, :, 0, 0]
    net.forward()
    layers = after(authors_files.attention_layers(PAPER.architecture), "relu5_3")
    theirs = reference.forward(
        layers, paper.blobs, dict(paper.encoder, **{"cls-label": one_hot(LABELS)})
    )
    figures = paper.figures
    check_close("attention alpha", net.blobs["alpha"].data, theirs["att"], figures)
    check_close("attention z", net.blobs["z"].data, theirs["soft-att"], figures)
    check_close("attention cls_score", net.blobs["cls_score"].data, theirs["cls-score"], figures)
    print("\nequivalence, max abs difference per blob:", paper.figures)


def test_classifier_equals_the_authors_classifier_at_paper_size(paper, tmp_path):
    """classificationNet (a V1-format file of DecoupledNet-style layers) imported: the
    generated deploy prototxt with its weights gives cls-score-sigmoid."""
    out = import_file(
        paper.paths["classificationNet"], str(tmp_path / "classificationNet.caffemodel")
    )
    model = authors.prototxt_path(out)
    net = inference.load_net(model, out)
    assert inference.input_size(net) == authors.CLASSIFIER_INPUT
    net.blobs["data"].data[...] = paper.image
    ours = net.forward()["prob"]
    layers = after(authors_files.classifier_layers(PAPER.architecture), "relu5_3")
    theirs = reference.forward(layers, paper.blobs, paper.encoder)["cls-score-sigmoid"]
    check_close("classifier prob", ours, theirs, paper.figures)
    assert ours.shape == (1, authors_files.VOC_OUTPUTS, 1, 1)
    print("\nequivalence, max abs difference per blob:", paper.figures)


# -- the format, recognition and bad input, at tiny size -------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The three released files at the tiny config's widths and feature scale."""
    folder = tmp_path_factory.mktemp("authors_tiny")
    blobs = authors_files.make_blobs(TINY.architecture, np.random.default_rng(5))
    paths = authors_files.write_release(str(folder), TINY.architecture, blobs)
    return types.SimpleNamespace(folder=folder, blobs=blobs, paths=paths)


def run_import(args, capsys):
    """(exit status, stdout, stderr) of tools/import_authors.py."""
    status = import_authors.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def test_stock_caffe_misreads_the_forks_fields_and_our_reader_does_not(tiny):
    """Read with stock caffe_pb2, the data layer's window_cls_data_param (142) becomes a
    scale_param with axis 80 and the Scale layer's scale_factor (in scale_param, 146) is lost;
    read with the fork's numbers both are what the authors wrote."""
    with open(tiny.paths["transferNet"], "rb") as f:
        data = f.read()
    stock = caffe_pb2.NetParameter()
    stock.ParseFromString(data)
    by_name = {(layer.name, layer.type): layer for layer in stock.layer}
    assert by_name["data", "SelectSrcTgkSegBinary"].scale_param.axis == 80
    assert not by_name["soft-att", "Scale"].HasField("scale_param")
    ours = authors_format.read_net(tiny.paths["transferNet"])
    layers = {(layer.name, layer.type): layer for layer in ours.layer}
    assert layers["data", "SelectSrcTgkSegBinary"].window_cls_data_param.label_dim == 80
    assert layers["soft-att", "Scale"].scale_param.scale_factor == TINY.architecture.feature_scale
    assert layers["unpool1", "Unpooling"].unpooling_param.unpool_size == TINY.architecture.crop
    # the bytes, by hand: field 146 length-delimited (tag 146 << 3 | 2 = 0x92 0x09), 9 bytes:
    # field 1 as a 64-bit double (tag 0x09) and the little-endian value
    scale = b"\x92\x09\x09\x09" + np.float64(TINY.architecture.feature_scale).tobytes()
    assert scale in data
    # both soft-att layers are kept, in file order
    names = [(i.name, i.type) for i in layer_infos(ours)]
    assert ("soft-att", "Scale") in names and ("soft-att", "LinearSum") in names


def test_blobs_read_by_stock_caffe_and_by_the_fork_reader_are_the_same(tiny):
    """BlobProto is the same message in both: the conv1_1 weights agree value for value,
    and a legacy 4-D shape (num, channels, height, width) is read as such."""
    stock = caffe_pb2.NetParameter()
    with open(tiny.paths["attentionNet"], "rb") as f:
        stock.ParseFromString(f.read())
    conv = next(layer for layer in stock.layer if layer.name == "conv1_1")
    ours = authors_format.read_net(tiny.paths["attentionNet"])
    blob = next(layer for layer in ours.layer if layer.name == "conv1_1").blobs[0]
    np.testing.assert_array_equal(
        authors_format.blob_array(blob),
        np.array(conv.blobs[0].data).reshape(conv.blobs[0].shape.dim),
    )
    legacy = authors_format.new("BlobProto", num=1, channels=1, height=2, width=3)
    legacy.data.append(np.arange(6, dtype="<f4").tobytes())
    assert authors_format.blob_array(legacy).shape == (1, 1, 2, 3)


def test_each_released_file_is_recognised_from_its_layers(tiny):
    for kind, path in tiny.paths.items():
        assert authors.recognise(authors_format.read_net(path), path) == kind


def test_a_v1_classifier_reads_as_its_upgraded_layers(tiny, tmp_path):
    net = authors_format.read_net(tiny.paths["classificationNet"])
    v1 = authors_files.write(str(tmp_path / "cls.caffemodel"), authors_files.to_v1(net))
    upgraded = authors_format.read_net(v1)
    assert [(i.name, i.type, i.shapes) for i in layer_infos(upgraded)] == [
        (i.name, i.type, i.shapes) for i in layer_infos(net)
    ]
    assert not len(upgraded.layers)


def test_the_tiny_transfernet_imports_onto_the_committed_tiny_nets(tiny, tmp_path, capsys):
    """Our tiny nets scale the pixels by 1/64 before conv1_1: the importer folds it into
    conv1_1, so the committed tiny seg_deploy equals the authors' deploy net."""
    out = tmp_path / "t.caffemodel"
    status, stdout, _ = run_import(
        [tiny.paths["transferNet"], "--out", out, "--config", "tiny"], capsys
    )
    assert status == 0 and "wrote %s" % out in stdout
    net = inference.load_net(TINY.layout.model("seg_deploy"), str(out))
    side = TINY.architecture.crop
    image = np.random.default_rng(1).normal(0, 60, (1, 3, side, side)).astype(np.float32)
    inference.forward_labels(net, image, LABELS)
    layers = authors_files.deploy_layers(TINY.architecture)
    switches = {"pool%d_mask" % b: net.blobs["pool%d_mask" % b].data for b in range(1, 5)}
    theirs = reference.forward(
        layers, tiny.blobs, {"data": image, "cls-label": one_hot(LABELS)}, switches
    )
    for block in range(1, 5):
        np.testing.assert_array_equal(
            theirs["own:pool%d_mask" % block], switches["pool%d_mask" % block]
        )
    figures = {}
    check_close(
        "seg_prob", net.blobs["seg_prob"].data, reference.softmax(theirs["seg-score"]), figures
    )
    check_close("s", net.blobs["s"].data, theirs["filter_sum_map"], figures)


def vgg16_file(path):
    """pretrainedCNN-like: VGG-16 with fc6-fc8 inner products and 1000 classes (tiny widths)."""
    arch = TINY.architecture
    layers = authors_files.encoder_layers(arch, masks=False, pool5=True) + [
        authors_files.ip("fc6", "pool5", 64),
        authors_files.ip("fc7", "fc6", 64),
        authors_files.ip("fc8", "fc7", authors.IMAGENET_CLASSES),
    ]
    shapes = authors_files.blob_shapes(layers, {"data": (1, 3, 64, 64)})
    blobs = authors_files.random_blobs(shapes, np.random.default_rng(0), 1.0)
    return authors_files.write(path, authors_files.snapshot("VGG_ILSVRC_16_layers", layers, blobs))


def test_the_imagenet_vgg16_needs_no_import(tmp_path, capsys):
    path = vgg16_file(str(tmp_path / "pretrainedCNN.caffemodel"))
    out = tmp_path / "out" / "pretrainedCNN.caffemodel"
    status, stdout, _ = run_import([path, "--out", out], capsys)
    assert status == 0 and "pretrainedCNN.caffemodel: the ImageNet VGG-16" in stdout
    assert "nothing to import" in stdout
    assert not out.exists()


def edited(path, out, edit):
    """Write the NetParameter of `path` changed by edit(net) to `out`."""
    net = authors_format.read_net(path)
    edit(net)
    return authors_files.write(str(out), net)


def layer_named(net, name, type_=None):
    return next(lp for lp in net.layer if lp.name == name and type_ in (None, lp.type))


def check_refused(args, capsys, *phrases):
    """Exit status 2, one error line holding every phrase, nothing written."""
    status, stdout, stderr = run_import(args, capsys)
    assert status == 2, stdout + stderr
    assert stderr.startswith("import_authors.py: error: ") and stderr.count("\n") == 1, stderr
    for phrase in phrases:
        assert phrase in stderr, (phrase, stderr)
    out = args[args.index("--out") + 1]
    assert not os.path.exists(out) and not os.path.exists(authors.prototxt_path(str(out)))
    assert not [n for n in os.listdir(os.path.dirname(str(out))) if n.startswith(".")]


def test_missing_layers_and_another_feature_scale_are_named(tiny, tmp_path, capsys):
    def edit(net):
        del net.layer[[lp.name for lp in net.layer].index("feat_embed")]
        layer_named(net, "soft-att", "Scale").scale_param.scale_factor = 0.01
        layer_named(net, "multiplicative").eltwise_param.operation = 1  # SUM

    bad = edited(tiny.paths["transferNet"], tmp_path / "bad.caffemodel", edit)
    out = tmp_path / "o" / "x.caffemodel"
    os.makedirs(out.parent)
    check_refused(
        [bad, "--out", out, "--config", "tiny"],
        capsys,
        bad,
        "looks like the authors' transferNet",
        "missing layers: feat_embed",
        "Scale layer soft-att scales conv5_3 by 0.01; the tiny nets by 3",
        "no Eltwise PROD of cls_embed and feat_embed",
    )


def test_a_convolution_layout_in_a_deconvolution_is_named_with_its_shapes(tiny, tmp_path, capsys):
    """deconv5_1's weights as (C_out, C_in, k, k), a convolution's layout: refused."""

    def edit(net):
        blob = layer_named(net, "deconv5_1").blobs[0]
        dims = list(blob.shape.dim)
        blob.shape.dim[:2] = dims[1::-1]

    bad = edited(tiny.paths["transferNet"], tmp_path / "bad.caffemodel", edit)
    out = tmp_path / "o" / "x.caffemodel"
    os.makedirs(out.parent)
    check_refused(
        [bad, "--out", out, "--config", "tiny"],
        capsys,
        "layer deconv5_1 has blob shapes [(64, 1, 3, 3), (64,)]; our tiny joint_train's "
        "deconv5_1 needs [(1, 64, 3, 3), (64,)]",
    )


def test_the_paper_config_names_every_layer_of_other_widths(tiny, tmp_path, capsys):
    out = tmp_path / "o" / "x.caffemodel"
    os.makedirs(out.parent)
    check_refused(
        [tiny.paths["attentionNet"], "--out", out, "--config", "paper"],
        capsys,
        "Scale layer soft-att scales conv5_3 by 3; the paper nets by 0.004",
    )


def test_our_own_caffemodel_is_not_the_authors(weights, tmp_path, capsys):
    """A caffemodel of our tiny seg_deploy: recognised by its decoder, refused with the
    authors' layer names it lacks and the layers it has instead."""
    out = tmp_path / "o" / "x.caffemodel"
    os.makedirs(out.parent)
    check_refused(
        [weights["seg"], "--out", out, "--config", "tiny"],
        capsys,
        "missing layers: combined_embed, att-w, ip1, cls-score-voc-att, seg-score",
        "unexpected layers with weights: att_hidden (InnerProduct",
        "no Scale layer over conv5_3",
    )


def test_a_file_of_another_net_lists_its_layers(tmp_path, capsys):
    net = authors_format.new("NetParameter")
    net.layer.append(authors_files.ip("fc1", "data", 4))
    net.layer[0].blobs.append(authors_files.blob_proto(np.zeros((4, 3), np.float32)))
    path = authors_files.write(str(tmp_path / "other.caffemodel"), net)
    out = tmp_path / "o" / "x.caffemodel"
    os.makedirs(out.parent)
    check_refused(
        [path, "--out", out],
        capsys,
        "is none of the authors' released caffemodels",
        "its layers with weights are fc1 (InnerProduct, [(4, 3)])",
    )


@pytest.mark.parametrize(
    "content, phrase",
    [(b"", "is empty (0 bytes)"), (b"\xff" * 64, "does not parse as a Caffe NetParameter")],
)
def test_a_file_that_is_no_caffemodel_is_refused(tmp_path, capsys, content, phrase):
    path = tmp_path / "transferNet.caffemodel"
    path.write_bytes(content)
    out = tmp_path / "o" / "x.caffemodel"
    os.makedirs(out.parent)
    check_refused([path, "--out", out], capsys, str(path), phrase)


def test_a_truncated_file_is_refused(tiny, tmp_path, capsys):
    with open(tiny.paths["transferNet"], "rb") as f:
        data = f.read()
    path = tmp_path / "transferNet.caffemodel"
    path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o" / "x.caffemodel"
    os.makedirs(out.parent)
    check_refused([path, "--out", out], capsys, str(path), "truncated or corrupt")


def test_out_dir_beside_the_inputs_is_refused_and_existing_outputs_are_kept(tiny, tmp_path, capsys):
    status, _, stderr = run_import(
        [tiny.paths["attentionNet"], "--out-dir", tiny.folder, "--config", "tiny"], capsys
    )
    assert status == 2 and "beside the authors' files" in stderr
    args = [
        tiny.paths["attentionNet"],
        tiny.paths["classificationNet"],
        "--out-dir",
        tmp_path,
        "--config",
        "tiny",
    ]
    status, stdout, _ = run_import(args, capsys)
    assert status == 0
    written = [
        tmp_path / "attentionNet.caffemodel",
        tmp_path / "classificationNet.caffemodel",
        tmp_path / "classificationNet.prototxt",
    ]
    assert all(p.exists() for p in written), stdout
    before = [p.stat().st_mtime_ns for p in written]
    status, stdout, _ = run_import(args, capsys)
    assert status == 0 and stdout.count("exists, kept (--force rewrites it)") == 2
    assert [p.stat().st_mtime_ns for p in written] == before


# -- make authors-table, rehearsed on the built-in VOC tree ----------------------------------


def test_authors_table_rehearsed_on_the_builtin_voc_tree(tiny, builtin_lmdbs, tmp_path, capsys):
    """tools/authors_table.py as `make authors-table DATASET=builtin` runs it (tiny nets): the
    tiny release imported, the val images segmented with the authors' protocol with the
    classifier's and the ground-truth labels, Table 1's rows beside the paper's; run again
    it keeps everything; an image whose label map was lost is segmented again."""
    from tools import authors_table as tool

    voc = os.path.join(os.path.dirname(os.path.dirname(builtin_lmdbs[0])), "VOCdevkit", "VOC2012")
    ids = open(os.path.join(voc, "ImageSets", "Segmentation", "val.txt")).read().split()
    out = tmp_path / "authors"
    args = ["--voc-root", voc, "--authors-dir", tiny.folder, "--out", out, "--config", "tiny"]
    args = [str(a) for a in args + ["--workers", 2]]
    assert tool.main(args) == 0
    first, err = capsys.readouterr()
    for run in ("transfernet", "transfernet_gt"):
        assert sorted(os.listdir(out / run)) == sorted([i + ".png" for i in ids] + ["eval.json"])
    assert "%d images: %d segmented" % (len(ids), len(ids)) in first
    assert "<" in err and "img/s" in err  # tqdm's bar: elapsed<remaining, rate
    assert "| TransferNet, released model here | " in first
    assert "| TransferNet-GT, paper | 85.2 | 70.6 |" in first
    table = (out / "table.md").read_text()
    assert table in first and len(table.splitlines()) == 6
    os.remove(out / "transfernet" / (ids[0] + ".png"))
    assert tool.main(args) == 0
    again, _ = capsys.readouterr()
    assert again.count("exists, kept") == 2
    assert "%d images: 1 segmented, %d already done" % (len(ids), len(ids) - 1) in again
    assert "%d images: 0 segmented, %d already done" % (len(ids), len(ids)) in again
    assert (out / "table.md").read_text() == table


def test_authors_table_names_a_missing_release_file(tmp_path, capsys):
    from tools import authors_table as tool

    args = ["--voc-root", tmp_path, "--authors-dir", tmp_path, "--out", tmp_path / "o"]
    assert tool.main([str(a) for a in args]) == 2
    _, err = capsys.readouterr()
    assert "transferNet.caffemodel" in err and "cvlab.postech.ac.kr" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "inserted, phrase",
    [
        ("Sigmoid", "mid (Sigmoid, feeds drop7)"),  # in place, in the middle: not droppable
        ("LRN", "mid (LRN)"),
    ],
)
def test_a_classifier_layer_the_importer_cannot_translate_is_named(
    tiny, tmp_path, capsys, inserted, phrase
):
    def edit(net):
        index = [lp.name for lp in net.layer].index("relu7")
        net.layer.insert(index + 1, authors_files.layer("mid", inserted, ["fc7"], ["fc7"]))

    bad = edited(tiny.paths["classificationNet"], tmp_path / "bad.caffemodel", edit)
    out = tmp_path / "o" / "x.caffemodel"
    os.makedirs(out.parent)
    check_refused([bad, "--out", out], capsys, "cannot translate the classifier's layers " + phrase)
