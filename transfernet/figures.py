"""Figures: matplotlib's one set-up, and grids of image panels.

Every figure is drawn with matplotlib's Agg backend (files only, no display) and written
atomically: pyplot() and save(). draw_figure lays out rows of Panels (an image, a heat map
over it, a marked point); transfernet/attention_figures.py fills them for the paper's
Figures 2, 3 and 6. Imports no Caffe, OpenCV or network code (tools/parse_log.py uses it).
"""

import collections

from transfernet.atomic import atomic_path

# A figure panel: a title, an RGB background (or None), a heat map drawn over it with the
# jet colour map (or None), and a (row, column) point to mark on it (or None).
Panel = collections.namedtuple("Panel", "title background heat marker")
Panel.__new__.__defaults__ = (None, None, None)


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, **savefig_args):
    """Write a figure as a PNG, atomically, and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **savefig_args)
    pyplot().close(fig)


def draw_figure(path, rows):
    """Write a grid of panels (one list of Panel per row) as a PNG, atomically."""
    plt = pyplot()
    columns = max(len(row) for row in rows)
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(3 * columns, 3 * len(rows)), squeeze=False
    )
    for ax_row, row in zip(axes, rows):
        for ax in ax_row:
            ax.axis("off")
        for ax, panel in zip(ax_row, row):
            ax.set_title(panel.title)
            if panel.background is not None:
                ax.imshow(panel.background)
            if panel.heat is not None:
                ax.imshow(
                    panel.heat,
                    cmap="jet",
                    interpolation="nearest",
                    alpha=0.6 if panel.background is not None else 1.0,
                )
            if panel.marker is not None:
                ax.plot(panel.marker[1], panel.marker[0], "w+", markersize=14, mew=3)
                ax.plot(panel.marker[1], panel.marker[0], "k+", markersize=10, mew=1.5)
    fig.tight_layout()
    save(fig, path, dpi=80)
