"""The project's input files: images, label PNGs and their VOC palette, list files, folders.

Images are read as OpenCV does, BGR uint8 (H, W, 3); networks take them minus MEAN_BGR.
Label PNGs are read with PIL, which returns palette indices for VOC's palette PNGs (OpenCV
would convert them to BGR colours). A bad image is a Skip (counted and reported by the
caller); a label PNG or list file that is not what it should be is a FileFormatError.
"""

import os

import cv2
import numpy as np
from PIL import Image

from transfernet.atomic import atomic_path

# BGR mean subtracted from every network input (the VGG-16 mean), in training and inference.
MEAN_BGR = (104.008, 116.669, 122.675)
# cv2.IMREAD_COLOR converts grayscale, RGBA (alpha dropped) and CMYK JPEGs to 3-channel BGR.
# Orientation tags are ignored: annotations are drawn on the stored pixel grid.
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
JPEG_EOI = b"\xff\xd9"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff")

# Reasons an image is skipped as bad.
UNREADABLE_IMAGE = "unreadable_image"
TRUNCATED_IMAGE = "truncated_image"


class Skip(Exception):
    """A bad input: the item is skipped, counted under `reason` and listed in the report."""

    def __init__(self, reason, detail):
        super().__init__("%s: %s" % (reason, detail))
        self.reason, self.detail = reason, detail


class FileFormatError(ValueError):
    """A label PNG or list file that cannot be read as one (the message names the file)."""


def read_image(path):
    """uint8 HxWx3 BGR image from a file; Skip if unreadable or truncated."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Skip(UNREADABLE_IMAGE, str(e))
    # libjpeg decodes a truncated JPEG with only a warning (grey bottom rows): its end-of-image
    # marker is missing. 0xFF 0xD9 cannot occur inside entropy-coded data (0xFF is stuffed).
    if data[:2] == b"\xff\xd8" and JPEG_EOI not in data[-4096:]:
        raise Skip(TRUNCATED_IMAGE, "%s: JPEG without end-of-image marker" % path)
    if not data:
        raise Skip(UNREADABLE_IMAGE, "%s: empty file" % path)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), IMREAD_FLAGS)
    except cv2.error as e:  # some decoders raise where others return None
        raise Skip(
            UNREADABLE_IMAGE,
            "%s: not a decodable image (%s)" % (path, str(e).strip().splitlines()[-1]),
        )
    if image is None:
        raise Skip(UNREADABLE_IMAGE, "%s: not a decodable image" % path)
    return image


def voc_colormap(n=256):
    """The standard PASCAL VOC colour map, (n, 3) uint8 RGB (bit-interleaved label ids)."""
    ids = np.arange(n)
    cmap = np.zeros((n, 3), np.uint8)
    for shift in range(8):
        for channel in range(3):
            bit = (ids >> channel) & 1
            cmap[:, channel] |= (bit << (7 - shift)).astype(np.uint8)
        ids = ids >> 3
    return cmap


def read_label_png(path):
    """An 8-bit label PNG (palette or grayscale) as a (H, W) uint8 array of ids."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise FileFormatError(
                "%s: label PNG has mode %s; expected an 8-bit palette (P) or "
                "grayscale (L) image of class ids" % (path, im.mode)
            )
        return np.asarray(im)


def write_label_png(path, label_map):
    """Write a (H, W) uint8 label map as a VOC palette PNG, atomically."""
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or label_map.dtype != np.uint8:
        raise ValueError(
            "write_label_png(%s): expected a 2-D uint8 label map, got %s %s"
            % (path, label_map.dtype, label_map.shape)
        )
    im = Image.fromarray(label_map, mode="P")
    im.putpalette(voc_colormap().ravel().tolist())
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def read_list(path):
    """Image ids of a VOC ImageSets-style list: first token of each non-blank line.

    A token with folders or an extension (`JPEGImages/x.jpg`) gives its stem (`x`).
    """
    with open(path) as f:
        tokens = [line.split()[0] for line in f if line.strip()]
    ids = [stem(t) for t in tokens]
    seen, dups = set(), []
    for i in ids:
        if i in seen:
            dups.append(i)
        seen.add(i)
    if dups:
        raise FileFormatError("%s: duplicate ids: %s" % (path, ", ".join(sorted(set(dups)))))
    if not ids:
        raise FileFormatError("%s: no ids" % path)
    return ids


def stem(path):
    """A file's name without folders and extension (an image's id and output name)."""
    return os.path.splitext(os.path.basename(path))[0]


def list_dir(folder):
    """Image files of a folder (by extension), sorted by name."""
    names = sorted(
        n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
    )
    return [os.path.join(folder, n) for n in names]


def list_file(list_path, root, ext=".jpg"):
    """Image paths of a VOC ImageSets-style list: root/<id><ext>."""
    return [os.path.join(root, i + ext) for i in read_list(list_path)]


def check_unique_stems(paths):
    """The paths if their stems (output names) are distinct; ValueError listing clashes."""
    seen, clashes = {}, []
    for path in paths:
        if stem(path) in seen:
            clashes.append("%s and %s" % (seen[stem(path)], path))
        seen.setdefault(stem(path), path)
    if clashes:
        raise ValueError("inputs with the same output name <stem>.png: %s" % "; ".join(clashes))
    return paths
