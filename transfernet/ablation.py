"""Ablations of a trained segmentation deploy net: what one part of the model adds.

  uniform_attention  TransferNet with att_score zeroed: alpha = 1/M everywhere, so z is the
                     mean of A and s = A mean(A), the same class-agnostic map for every label
  swapped_labels     TransferNet queried with another label of the same image (the image's
                     labels shifted by one), its map named with the true label: if alpha is
                     class-specific the decoder then segments the wrong object
  no_class_map       BaselineNet with s_fc's weights zeroed: s is its bias, one learnt map for
                     every image and label (Appendix B's class score map cut off)

Each is applied to a loaded net (apply) and, for swapped_labels, to the queries of each
image (queries); the label maps are scored like the intact net's.
"""

import numpy as np

ABLATIONS = ("uniform_attention", "swapped_labels", "no_class_map")
# The layer an ablation changes: it applies to the nets that have it.
LAYER = {"uniform_attention": "att_score", "swapped_labels": "att_score", "no_class_map": "s_fc"}


def applicable(net):
    """The ABLATIONS that apply to a net (those whose LAYER it has)."""
    return [a for a in ABLATIONS if LAYER[a] in net.params]


def apply(net, ablation):
    """Change the loaded net in place for `ablation`; ValueError if it does not apply."""
    if ablation not in ABLATIONS:
        raise ValueError(
            "unknown ablation %r; expected one of %s" % (ablation, ", ".join(ABLATIONS))
        )
    layer = LAYER[ablation]
    if layer not in net.params:
        raise ValueError("ablation %s needs a net with layer %s" % (ablation, layer))
    if ablation == "uniform_attention":
        for blob in net.params[layer]:
            blob.data[...] = 0
    elif ablation == "no_class_map":
        net.params[layer][0].data[...] = 0  # keep the bias: the learnt map


def queries(class_ids, ablation):
    """The labels the net is queried with for an image's sorted class_ids: shifted by one
    for swapped_labels (each label's map comes from the next label's query), the ids
    themselves otherwise."""
    class_ids = np.asarray(class_ids)
    if ablation == "swapped_labels":
        return np.roll(class_ids, -1)
    return class_ids
