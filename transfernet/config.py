"""What an experiment is made of: four values composed into a Config, the way mmsegmentation
composes model, dataset and schedule files.

  Architecture  the networks' shapes: channel width, input crops, number of classes, and the
                input and feature scales (Powers inside the nets). A crop is the net's input
                size, so it is architecture: the decoder's unpoolings and the attention's
                positions follow from it.
  Data          the training stream: source- and target-domain LMDB folders, the probability
                that a sample comes from the source domain, and the pre-crop resizes. A resize
                is data augmentation (the data layer resizes, then crops the net's input at a
                random place) and the size the LMDB records are built at.
  Schedule      the solvers' numbers: per-stage batch, iter_size, iterations and learning rate;
                the snapshot and display intervals.
  Layout        where the files live: the nets, the solvers, the snapshots, and the weights
                stage 0 starts from (outside the tree, or None: from scratch). The committed
                tree has one (models/<name>/, solvers[/<name>]/, snapshots[/<name>]/), a run
                folder another (Layout.run); the generators take it, so nothing is patched
                after generation.

A new dataset or schedule is one new value: Config('x', TINY_ARCHITECTURE, MY_DATA,
TINY_SCHEDULE, layout). The committed configs are PAPER and TINY (CONFIGS, with nets in
models/<name>/); MINI, the miniature reproduction's, has its nets in run folders only.

    python3 -m transfernet.config get tiny data.resize     # 138 (more fields: one per line)
"""

import collections
import os
import sys

from transfernet import class_table

# Per-stage solver numbers: per-forward batch, iter_size (batch * iter_size = effective
# mini-batch), iterations, Adam learning rate, and the iteration after which it is divided by
# 10 (None: fixed, as in the paper).
Stage = collections.namedtuple(
    "Stage", "batch iter_size max_iter base_lr lr_step", defaults=(None,)
)

Architecture = collections.namedtuple(
    "Architecture",
    [
        "width",  # channel multiplier: every channel count = round(width * VGG count)
        "crop",  # stage 1/2 and deploy input (crop x crop)
        "classifier_crop",  # stage 0 input
        "num_classes",  # label vector length (VOC ids 1..20, COCO-60 ids 21..80)
        # the class table's tag (transfernet.class_table), in every net's name, so every
        # caffemodel Caffe snapshots names the table it was trained for
        "classes",
        "input_scale",  # mean-subtracted pixels are multiplied by this before conv1_1
        "feature_scale",  # conv5_3 is multiplied by this before the attention model
        # encoder kernel size of each convolution, per block of nets.ENCODER; None: VGG-16's 3
        "kernels",
    ],
    defaults=(None,),
)

Data = collections.namedtuple(
    "Data",
    [
        "source",
        "target",  # LMDB folders of the two domains (relative to the checkout root)
        "source_fraction",  # probability that a training sample comes from the source domain
        "resize",  # stage 1/2 pre-crop resize (and the records' size)
        "classifier_resize",  # stage 0 pre-crop resize
    ],
)

Schedule = collections.namedtuple(
    "Schedule",
    [
        "stages",  # {'classifier' | 'attention' | 'joint': Stage}
        "snapshot",  # snapshot interval (iterations)
        "display",  # solver display interval
    ],
)


class Layout(collections.namedtuple("Layout", "models solvers snapshots classifier_init")):
    """Folders of the nets, solvers and snapshots, and stage 0's initial weights (or None)."""

    __slots__ = ()

    @classmethod
    def run(cls, folder, classifier_init=None):
        """A run folder's: <folder>/models, <folder>/solvers, <folder>/snapshots."""
        return cls(
            *(os.path.join(folder, d) for d in ("models", "solvers", "snapshots")), classifier_init
        )

    def model(self, net):
        return os.path.join(self.models, net + ".prototxt")

    def solver(self, name):
        return os.path.join(self.solvers, name + ".prototxt")

    def snapshot_prefix(self, name):
        """<snapshots>/<name>/<name>. Caffe checks at start-up that it can write there and does
        not create folders: the committed ones are in the tree (snapshots/README.md)."""
        return os.path.join(self.snapshots, name, name)

    def snapshot(self, name, iteration):
        """The caffemodel Caffe writes for `name` after `iteration` iterations."""
        return "%s_iter_%d.caffemodel" % (self.snapshot_prefix(name), iteration)


class Config(collections.namedtuple("Config", "name architecture data schedule layout")):
    """One experiment: its name (models/<name>/, the nets' names) and its four parts."""

    __slots__ = ()

    def with_data(self, **fields):
        """The config with some of its data's fields replaced: the same dataset in other
        folders (source=..., target=...), as the demo's --data and repro-mini's subsets."""
        return self._replace(data=self.data._replace(**fields))


PAPER_ARCHITECTURE = Architecture(
    width=1.0,
    crop=320,
    classifier_crop=224,  # so ImageNet VGG-16's fc6/fc7 load by name (pool5 is 7x7)
    num_classes=class_table.PAPER.num_classes,
    classes=class_table.PAPER.tag,
    input_scale=1,  # ImageNet VGG-16 takes pixels in [-128, 128] (no Power layer)
    feature_scale=0.004,
)  # the authors' value for ImageNet VGG-16 (conv5_3 ~50 on average)

COCO_VOC = Data(
    source="data/lmdb/source",  # specs/paper.json's (data_prep.build)
    target="data/lmdb/target",
    source_fraction=0.5,  # our choice: the paper does not give the domain mix
    resize=330,
    classifier_resize=240,
)

PAPER_SCHEDULE = Schedule(
    stages={
        "classifier": Stage(batch=8, iter_size=8, max_iter=15000, base_lr=1e-4),  # our choice
        "attention": Stage(batch=8, iter_size=8, max_iter=15000, base_lr=1e-3),  # Sec. 6.1
        "joint": Stage(batch=4, iter_size=16, max_iter=15000, base_lr=5e-4),  # Sec. 6.1
    },
    snapshot=5000,
    display=20,
)

PAPER = Config(
    "paper",
    PAPER_ARCHITECTURE,
    COCO_VOC,
    PAPER_SCHEDULE,
    Layout("models/paper", "solvers", "snapshots", "data/vgg16/VGG_ILSVRC_16_layers.caffemodel"),
)

TINY_ARCHITECTURE = Architecture(
    width=0.125,
    # 8x8 attention positions: at 96 px (6x6) and 112 px (7x7) stage 1 localises less
    crop=128,
    # The paper's geometry: the classifier sees the image smaller (224 against 320), so its
    # fc6 (pool5 3x3 here, 7x7 there) slides over the segmentation nets' pool5 (4x4, 10x10)
    # as a convolution: BaselineNet's class score maps are 2x2 (4x4), coarser than conv5_3.
    classifier_crop=96,
    num_classes=class_table.PAPER.num_classes,
    classes=class_table.PAPER.tag,
    # From scratch: pixels / 64 give conv1_1 O(1) inputs; conv5_3 then averages ~0.07 after
    # stage 0, and x 3 gives the paper's A ~0.2 (0.004 x ~50), so s = A z reaches the decoder
    # (docs/decisions.md has the measurements behind these and the schedule below).
    input_scale=1 / 64,
    feature_scale=3,
    # VGG-16's 13 convolutions and 4 poolings, 3x3 only in the first convolution of blocks 1-4
    # and 1x1 elsewhere: conv5_3 sees 46 px (0.36 of the crop; the paper's 196 of 320 is 0.61).
    # With 3x3 everywhere every cell sees twice the image and its padding, the cells' features
    # encode their position, and stage 1 learns to name the label by where it attends.
    kernels=((3, 1), (3, 1), (3, 1, 1), (3, 1, 1), (1, 1, 1)),
)

BUILTIN = Data(  # data_prep.builtin's dataset, at the tiny nets' sizes
    source="data/builtin/lmdb/source",
    target="data/builtin/lmdb/target",
    source_fraction=0.75,  # more masks for the decoder trained from Gaussians
    resize=138,
    classifier_resize=105,
)

TINY_SCHEDULE = Schedule(
    stages={
        # from scratch: 1e-3 collapses conv5_3, a fixed 3e-4 leaves the label predictions
        # swinging from one snapshot to the next, lr / 10 after 2400 iterations settles them
        "classifier": Stage(batch=8, iter_size=1, max_iter=3600, base_lr=3e-4, lr_step=2400),
        # 300 iterations leave alpha on the objects' edges or off them (docs/decisions.md)
        "attention": Stage(batch=8, iter_size=1, max_iter=3000, base_lr=1e-3),
        # the paper's 5e-4 (1e-3 leaves the decoder's output on the unseen target shapes
        # swinging from one snapshot to the next)
        "joint": Stage(batch=4, iter_size=1, max_iter=2500, base_lr=5e-4),
    },
    snapshot=100,
    display=10,
)

TINY = Config(
    "tiny",
    TINY_ARCHITECTURE,
    BUILTIN,
    TINY_SCHEDULE,
    Layout("models/tiny", "solvers/tiny", "snapshots/tiny", None),
)

# The tiny recipe (architecture and schedule) on repro-mini's larger built-in dataset
# (transfernet.repro); its nets are written into the run folders only (experiment.prepare).
MINI = Config(
    "mini",
    TINY_ARCHITECTURE,
    BUILTIN._replace(
        source="data/builtin-mini/lmdb/source", target="data/builtin-mini/lmdb/target"
    ),
    TINY_SCHEDULE._replace(snapshot=800, display=20),
    Layout("models/mini", "solvers/mini", "snapshots/mini", None),
)


def for_table(cfg, table):
    """The config with the nets of a class table (transfernet.class_table): its label vector
    length and its tag, which the nets' names carry."""
    arch = cfg.architecture._replace(num_classes=table.num_classes, classes=table.tag)
    return cfg._replace(architecture=arch)


CONFIGS = {"paper": PAPER, "tiny": TINY}  # the committed ones: models/<name>/, solvers[/<name>]/
NAMED = dict(CONFIGS, mini=MINI)


def get(name, field):
    """A config's value by dotted field, e.g. get('tiny', 'data.resize') -> 138; KeyError naming
    what is not there."""
    if name not in NAMED:
        raise KeyError("no config %r; expected one of %s" % (name, ", ".join(sorted(NAMED))))
    value = NAMED[name]
    for part in field.split("."):
        if not hasattr(value, "_fields") or part not in value._fields:
            raise KeyError("config %r has no field %r" % (name, field))
        value = getattr(value, part)
    return value


def main(argv):
    """`get NAME FIELD [FIELD ...]`: print each value on a line of its own (the Makefile reads
    its paths and sizes this way, in one call)."""
    if len(argv) < 3 or argv[0] != "get":
        print("usage: python3 -m transfernet.config get NAME FIELD [FIELD ...]", file=sys.stderr)
        return 2
    try:
        values = [get(argv[1], field) for field in argv[2:]]
    except KeyError as e:
        print("transfernet.config: %s" % e.args[0], file=sys.stderr)
        return 2
    print("\n".join(str(v) for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
