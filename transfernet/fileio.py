"""The project's input files: images, label PNGs and their VOC palette, list files, folders.

Images are read as OpenCV does, BGR uint8 (H, W, 3); networks take them minus MEAN_BGR.
Label PNGs are read with PIL, which returns palette indices for VOC's palette PNGs (OpenCV
would convert them to BGR colours). A bad image is a Skip (counted and reported by the
caller); a label PNG, list file or JSON file that is not what it should be is a
FileFormatError naming the file. Text files are UTF-8; a leading byte-order mark (as Windows
editors write) is dropped.
"""

import codecs
import json
import os
import re

import cv2
import numpy as np
from PIL import Image

from transfernet.atomic import atomic_path

# BGR mean subtracted from every network input (the VGG-16 mean), in training and inference.
MEAN_BGR = (104.008, 116.669, 122.675)
# cv2.IMREAD_COLOR converts grayscale, RGBA (alpha dropped) and CMYK JPEGs to 3-channel BGR.
# Orientation tags are ignored: annotations are drawn on the stored pixel grid.
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
JPEG_SOI, JPEG_EOI = 0xD8, 0xD9
# A marker: 0xFF and a byte that is not a stuffed 0x00, a fill 0xFF, RST0-7 or TEM (markers
# without a length, which also occur inside entropy-coded data).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\x01\xff\xd0-\xd7]")
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
    """A label PNG, list or JSON file that cannot be read as one (the message names the file)."""


def read_image(path):
    """uint8 HxWx3 BGR image from a file; Skip if unreadable or truncated."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Skip(UNREADABLE_IMAGE, str(e))
    # libjpeg decodes a truncated JPEG with only a warning (grey bottom rows).
    if data[:2] == bytes((0xFF, JPEG_SOI)) and not jpeg_complete(data):
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


def jpeg_complete(data):
    """Whether JPEG data reach the image's end-of-image marker. The marker segments are
    followed from the start, each skipped by its length (so the marker of a thumbnail inside
    an EXIF segment does not count), the entropy-coded data of a scan up to the next marker;
    bytes after the end of the image (camera trailers, motion-photo videos) are not read."""
    pos = 2
    while True:
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            return False
        pos, marker = found.start(), data[found.start() + 1]
        if marker == JPEG_EOI:
            return True
        if marker == JPEG_SOI or pos + 4 > len(data):
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        # A scan's header is followed by its entropy-coded data, whose end is the next marker.
        pos += 2 + max(length, 2)


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


def read_text(path):
    """The text of a UTF-8 file, without a leading byte-order mark; FileFormatError naming the
    file (and the line of the first bad byte) if it is not UTF-8 text."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileFormatError(
            "%s is UTF-16 text (it starts with a UTF-16 byte-order mark); save it as UTF-8" % path
        )
    if b"\x00" in data:
        raise FileFormatError(
            "%s: NUL byte at line %d: not UTF-8 text (UTF-16?); save it as UTF-8"
            % (path, data.count(b"\n", 0, data.index(b"\x00")) + 1)
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FileFormatError(
            "%s: byte 0x%02x at line %d is not UTF-8 (Latin-1 or another encoding?); save the "
            "file as UTF-8" % (path, data[e.start], data.count(b"\n", 0, e.start) + 1)
        ) from None


def read_json(path):
    """The value of a UTF-8 JSON file; FileFormatError naming the file if it is not JSON."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise FileFormatError("%s is not valid JSON: %s" % (path, e)) from None


def read_list(path):
    """Image ids of a VOC ImageSets-style list: first token of each non-blank line.

    A line is an id; a token with folders or an image extension (`JPEGImages/x.jpg`) gives
    the file's id (`x`); other dots belong to the id (`x.v2`). FileFormatError naming the
    file and line for an id with an invisible character, for duplicate ids, for no id.
    """
    ids = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        token = line.split()[0]
        hidden = [c for c in token if not c.isprintable()]
        if hidden:
            raise FileFormatError(
                "%s: line %d: id %r holds the invisible character U+%04X"
                % (path, number, token, ord(hidden[0]))
            )
        ids.append(image_id(token))
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


def image_id(token):
    """The id a list token names: without folders and without an image extension (only
    those: `a.v2` is the id `a.v2`, `JPEGImages/a.v2.jpg` too)."""
    name = os.path.basename(token)
    root, ext = os.path.splitext(name)
    return root if ext.lower() in IMAGE_EXTENSIONS else name


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
