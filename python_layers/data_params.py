"""SourceTargetData's param_str: its keys, their checks, and the layer's configuration.

param_str (JSON), e.g.
  {"source": "data/lmdb/source", "target": "data/lmdb/target", "source_fraction": 0.5,
   "batch_size": 8, "resize": 330, "crop": 320, "mirror": true,
   "mean": [104.008, 116.669, 122.675], "num_classes": 80, "multilabel": false,
   "seed": 0, "workers": 2, "classes": "coco60-voc20:20+60:..."}
  source / target   dataset folders (transfernet/records.py format) or null (not both null);
                    the source dataset must have masks/.
  source_fraction   probability that a sample comes from the source domain.
  batch_size, resize, crop, num_classes
                    the batch, the pre-crop resize, the crop and the label vector length.
  mirror            random mirror in TRAIN.
  mean              BGR mean subtracted from the data.
  multilabel        label = multi-hot of all the image's classes (stage 0 classifier).
  seed              seed of the batch stream (data_sampling.fill_batch).
  workers           background processes preparing batches (0 = in the layer's process).
  classes           the class table's tag (transfernet.class_table), or null: a dataset whose
                    meta.json names another table is refused.

The dataset and geometry keys are required: they are a config's numbers (transfernet/config.py,
written by transfernet/nets.py), so a layer never trains on numbers that no config chose.
"""

import os

import caffe
import lmdb
import numpy as np
from layer_params import REQUIRED, parse_params

from transfernet import records
from transfernet.class_table import describe_tag
from transfernet.fileio import MEAN_BGR

NAME = "SourceTargetData"
DEFAULTS = {
    "source": REQUIRED,
    "target": REQUIRED,
    "source_fraction": REQUIRED,
    "batch_size": REQUIRED,
    "resize": REQUIRED,
    "crop": REQUIRED,
    "num_classes": REQUIRED,
    # The paper's augmentation; TEST never mirrors whatever this says.
    "mirror": True,
    # The project's one preprocessing mean (fileio), which inference subtracts too.
    "mean": list(MEAN_BGR),
    # A mode of the layer, set by the stage-0 net, not a number of the data.
    "multilabel": False,
    # Any seed is an equally valid run; 0 makes a hand-written net reproducible.
    "seed": 0,
    # A machine resource: the batches do not depend on it.
    "workers": 2,
    # The generated nets name their table; a hand-written net need not.
    "classes": None,
}


def layer_error(message):
    """ValueError whose message starts with the layer's name."""
    return ValueError("%s: %s" % (NAME, message))


def _check_int(params, key, low, high=None):
    value = params[key]
    if type(value) is not int or value < low or (high is not None and value > high):
        raise layer_error(
            "%r must be an integer in [%s, %s], got %r"
            % (key, low, "inf" if high is None else high, value)
        )


def _check_dataset(role, path, num_classes, need_masks, table=None):
    """Dataset summary {"path", "count", "masks"}; ValueError naming the folder if unusable."""
    if not isinstance(path, str):
        raise layer_error("%r must be a dataset folder or null, got %r" % (role, path))
    if not os.path.isdir(path):
        raise layer_error("%s dataset %s does not exist (build it with `make data`)" % (role, path))
    try:
        meta = records.read_meta(path)
    except ValueError as exc:
        raise layer_error("%s dataset: %s" % (role, exc)) from None
    if meta.get("num_classes") != num_classes:
        raise layer_error(
            "%s dataset %s has num_classes %r in meta.json, the layer has num_classes %d"
            % (role, path, meta.get("num_classes"), num_classes)
        )
    found = meta.get("class_table")
    if table is not None and found is not None and found != table:
        raise layer_error(
            "%s dataset %s was built for the class table %s, the layer is for %s (rebuild it "
            "with `make data SPEC=...`, or generate the nets for its table)"
            % (role, path, describe_tag(found), describe_tag(table))
        )
    masks = os.path.join(path, "masks")
    if need_masks and not os.path.isdir(masks):
        raise layer_error(
            "source dataset %s has no masks/ LMDB (a target dataset was given as source?)" % path
        )
    for sub in ("images", "masks") if need_masks else ("images",):
        env = lmdb.open(os.path.join(path, sub), readonly=True, lock=False)
        entries = env.stat()["entries"]
        env.close()
        if entries != meta["count"] or entries == 0:
            raise layer_error(
                "%s dataset %s: %s/ holds %d records, meta.json says count %r"
                % (role, path, sub, entries, meta["count"])
            )
    return {"path": path, "count": int(meta["count"]), "masks": need_masks}


def load_config(param_str, phase, num_tops):
    """Validated layer configuration from param_str (see the module docstring)."""
    params = parse_params(NAME, param_str, DEFAULTS)
    if num_tops not in (2, 3):
        raise layer_error(
            "expected 2 tops (data, label) or 3 (data, label, seg-label), got %d" % num_tops
        )
    if params["multilabel"] and num_tops == 3:
        raise layer_error("multilabel mode emits no seg-label: use 2 tops, got 3")
    for key, low in (
        ("batch_size", 1),
        ("resize", 1),
        ("crop", 1),
        ("num_classes", 1),
        ("workers", 0),
    ):
        _check_int(params, key, low)
    _check_int(params, "seed", 0, 2**32 - 1)
    if params["crop"] > params["resize"]:
        raise layer_error("crop %d is larger than resize %d" % (params["crop"], params["resize"]))
    fraction = params["source_fraction"]
    if type(fraction) not in (int, float) or not 0.0 <= fraction <= 1.0:
        raise layer_error("'source_fraction' must be a number in [0, 1], got %r" % (fraction,))
    mean = params["mean"]
    if len(mean) != 3 or not all(type(m) in (int, float) for m in mean):
        raise layer_error("'mean' must be 3 numbers (B, G, R), got %r" % (mean,))
    if params["source"] is None and params["target"] is None:
        raise layer_error("'source' and 'target' are both null: give at least one dataset folder")
    datasets = [
        None
        if params[role] is None
        else _check_dataset(
            role, params[role], params["num_classes"], role == "source", params["classes"]
        )
        for role in ("source", "target")
    ]
    if datasets[0] is None:
        fraction = 0.0
    elif datasets[1] is None:
        fraction = 1.0
    train = phase == caffe.TRAIN
    # Only the TRAIN net is replicated per solver; the TEST net runs on rank 0 alone.
    rank, ranks = (caffe.solver_rank(), caffe.solver_count()) if train else (0, 1)
    return dict(
        params,
        datasets=datasets,
        source_fraction=fraction,
        train=train,
        rank=rank,
        ranks=ranks,
        seg=num_tops == 3,
        mean=np.array(mean, np.float32).reshape(1, 3, 1, 1),
    )


def batch_shapes(cfg):
    """Shapes of the tops (and of one shared-memory slot)."""
    b, c = cfg["batch_size"], cfg["crop"]
    shapes = [(b, 3, c, c), (b, cfg["num_classes"])]
    return shapes + [(b, 1, c, c)] if cfg["seg"] else shapes
