"""transfernet.fileio: images, label PNGs and the VOC palette, list files, output names."""

import cv2
import numpy as np
import pytest
from PIL import Image

from transfernet import fileio


@pytest.mark.parametrize(
    "content, why",
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not a decodable image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9", "not a decodable image"),
    ],
)
def test_read_image_undecodable_is_a_skip(tmp_path, content, why):
    path = str(tmp_path / "bad.img")
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(fileio.Skip) as err:
        fileio.read_image(path)
    assert err.value.reason == fileio.UNREADABLE_IMAGE
    assert path in err.value.detail and why in err.value.detail


def test_read_list_formats_and_duplicates(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("2007_000033\n\nJPEGImages/2007_000042.jpg SegmentationClass/x.png\n")
    assert fileio.read_list(str(lst)) == ["2007_000033", "2007_000042"]
    lst.write_text("a\nb\na\n")
    with pytest.raises(fileio.FileFormatError, match="duplicate ids: a"):
        fileio.read_list(str(lst))


def test_palette_png_roundtrip_and_voc_colours(tmp_path):
    labels = np.array([[0, 1, 15], [20, 255, 2]], np.uint8)
    path = str(tmp_path / "x.png")
    fileio.write_label_png(path, labels)
    with Image.open(path) as im:
        assert im.mode == "P"
    assert np.array_equal(fileio.read_label_png(path), labels)
    # OpenCV decodes the palette to BGR colours: the standard VOC colour map.
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    assert bgr[0, 1].tolist() == [0, 0, 128]  # aeroplane (128, 0, 0)
    assert bgr[0, 2].tolist() == [128, 128, 192]  # person (192, 128, 128)
    assert bgr[1, 0].tolist() == [128, 64, 0]  # tvmonitor (0, 64, 128)
    assert bgr[1, 2].tolist() == [0, 128, 0]  # bicycle (0, 128, 0)
    assert bgr[1, 1].tolist() == [192, 224, 224]  # void (224, 224, 192)
    assert bgr[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="2-D uint8"):
        fileio.write_label_png(path, labels.astype(np.int32))


def test_rgb_png_is_rejected(tmp_path):
    path = str(tmp_path / "rgb.png")
    cv2.imwrite(path, np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(fileio.FileFormatError, match="mode RGB"):
        fileio.read_label_png(path)


def test_output_names_must_be_unique():
    assert fileio.check_unique_stems(["d/a.jpg", "d/b.png"]) == ["d/a.jpg", "d/b.png"]
    with pytest.raises(ValueError, match="d/a.jpg and e/a.png"):
        fileio.check_unique_stems(["d/a.jpg", "d/b.jpg", "e/a.png"])
