"""SourceTargetData: the TransferNet training data layer (paper Sec. 5, Eq. 9; Sec. 6.1).

Each sample is one term of Eq. (9): an image i of T or S, ONE class l in its label set L*_i,
and the binary mask d^l_i of l (source images only: the segmentation term sums over S).
The layer emits

  top[0] data       (B, 3, crop, crop) float32, BGR minus `mean`
  top[1] label      (B, num_classes) one-hot of the chosen class (index = id - 1); with
                    "multilabel": true, the multi-hot vector of all the image's classes
                    (stage 0 classifier)
  top[2] seg-label  (B, 1, crop, crop) optional: 1 where mask == l, 255 where the mask is 255
                    (ignored), 0 elsewhere; all 255 for target samples (no mask: they train
                    only the classification branch). Not allowed with multilabel.

Its param_str keys: data_params.py; how samples are drawn: data_sampling.py; the worker
processes preparing batches: data_prefetch.py. `net_prototxt` writes a net holding this layer
alone (for the tests and the benchmarks).
"""

import json

import caffe
import data_prefetch
from data_params import batch_shapes, layer_error, load_config
from layer_params import report_errors


@report_errors
class SourceTargetData(caffe.Layer):
    """Source/target sampling data layer: tops in the module docstring, param_str in
    data_params."""

    def setup(self, bottom, top):
        if len(bottom) != 0:
            raise layer_error("takes no bottoms, got %d" % len(bottom))
        self.cfg = load_config(self.param_str, self.phase, len(top))
        self.loader = data_prefetch.loader(self.cfg)

    def reshape(self, bottom, top):
        for i, shape in enumerate(batch_shapes(self.cfg)):
            top[i].reshape(*shape)

    def forward(self, bottom, top):
        self.loader.fill([top[i].data for i in range(len(top))])

    def backward(self, top, propagate_down, bottom):
        pass  # no bottoms

    def worker_pids(self):
        """Process ids of the prefetching workers (empty with workers 0)."""
        return self.loader.pids()

    def close(self):
        """Stop the prefetching workers (idempotent)."""
        self.loader.close()


def net_prototxt(params, seg=True):
    """Text of a one-layer net holding SourceTargetData with `params` (a dict)."""
    tops = ["data", "label"] + (["seg-label"] if seg else [])
    return (
        'name: "source_target_data"\nlayer { name: "data" type: "Python" %s\n'
        '  python_param { module: "data_layer" layer: "SourceTargetData" '
        "param_str: %s } }\n"
        % (" ".join('top: "%s"' % t for t in tops), json.dumps(json.dumps(params)))
    )
