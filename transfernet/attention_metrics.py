"""What the attention attends to: alpha (Eq. 3-4) of label y against where class y is.

Measured at the attention's resolution, on the padded square the deploy net sees
(inference.preprocess: the image at the top-left of a square of side max(H, W)). Each
feature cell gets the fraction of its labelled pixels that are class y; padding counts as
labelled and not the class, void (255) pixels are left out. For one (image, label y):

  pointing  argmax(alpha) is a cell at least half covered by y (POINTING_COVER)
  pointing_ceiling  some cell is at least half covered by y: the best an argmax can do at
            this resolution (thin or small objects may cover no cell that much)
  inside    alpha's mass on y: sum_i alpha_i f_y(i); uniform attention gets mean_i f_y(i)
  own       on an image with two or more classes, mass on y / mass on any object:
            sum_i alpha_i f_y(i) / sum_i alpha_i f_obj(i) (0 when alpha has no mass on any
            object); uniform attention gets sum_i f_y(i) / sum_i f_obj(i)

A class-specific attention (what Eq. 6 is meant to learn) has own near 1 on multi-class
images; one that only finds objects has own near the uniform value.
"""

import numpy as np

from transfernet.classes import BACKGROUND, IGNORE

POINTING_COVER = 0.5
FIELDS = ("pointing", "pointing_ceiling", "inside", "inside_uniform", "own", "own_uniform")


def cell_weights(side, cells):
    """(cells, side) overlap of pixel p = [p, p + 1) with cell r = [r side / cells,
    (r + 1) side / cells): cell areas of a (side, side) map are W @ map @ W.T."""
    edges = np.arange(cells + 1) * (side / cells)
    pixels = np.arange(side + 1)
    low = np.maximum(edges[:-1, None], pixels[None, :-1])
    high = np.minimum(edges[1:, None], pixels[None, 1:])
    return np.clip(high - low, 0, None)


def cell_fractions(label_map, class_ids, cells):
    """{class id or 'objects': (cells, cells) fraction of each cell's labelled pixels that are
    that class (or any class but background)}, on the padded square of label_map (H, W)."""
    height, width = label_map.shape
    side = max(height, width)
    weights = cell_weights(side, cells)

    def area(mask, padding=0.0):
        padded = np.full((side, side), padding)
        padded[:height, :width] = mask
        return weights @ padded @ weights.T

    labelled = area(label_map != IGNORE, padding=1.0)  # padding: labelled, not the class
    masks = {c: label_map == c for c in class_ids}
    masks["objects"] = (label_map != BACKGROUND) & (label_map != IGNORE)
    return {
        c: np.divide(area(m), labelled, out=np.zeros((cells, cells)), where=labelled > 0)
        for c, m in masks.items()
    }


def pair_measures(alpha, fractions, class_id, multi_class):
    """The FIELDS of one (image, label): alpha (h, w) of label class_id, fractions from
    cell_fractions; own and own_uniform are None unless multi_class."""
    alpha = np.asarray(alpha, np.float64)
    own_f, objects = fractions[class_id], fractions["objects"]
    on_class, on_objects = float((alpha * own_f).sum()), float((alpha * objects).sum())
    out = {
        "pointing": bool(own_f.flat[int(alpha.argmax())] >= POINTING_COVER),
        "pointing_ceiling": bool(own_f.max() >= POINTING_COVER),
        "inside": on_class,
        "inside_uniform": float(own_f.mean()),
        "own": None,
        "own_uniform": None,
    }
    if multi_class:
        out["own"] = on_class / on_objects if on_objects > 0 else 0.0
        out["own_uniform"] = float(own_f.sum() / objects.sum())
    return out


def image_measures(alphas, label_map, class_ids):
    """[pair_measures] of one image: alphas (K, h, w) of its K ground-truth class_ids."""
    alphas = np.asarray(alphas)
    fractions = cell_fractions(label_map, class_ids, alphas.shape[-1])
    multi = len(class_ids) > 1
    return [pair_measures(a, fractions, c, multi) for a, c in zip(alphas, class_ids)]


def summarise(pairs):
    """Means of the FIELDS over (image, label) pairs (own and own_uniform over the pairs of
    multi-class images), with the counts: {"pairs", "multi_class_pairs", field: mean}."""
    multi = [p for p in pairs if p["own"] is not None]
    out = {"pairs": len(pairs), "multi_class_pairs": len(multi)}
    for field in FIELDS:
        rows = multi if field.startswith("own") else pairs
        out[field] = float(np.mean([p[field] for p in rows])) if rows else None
    return out
