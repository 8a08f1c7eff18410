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


def _jpeg(h, w, seed, params=()):
    rng = np.random.RandomState(seed)
    image = cv2.resize(rng.randint(0, 256, (8, 8, 3)).astype(np.uint8), (w, h))
    return image, cv2.imencode(".jpg", image, list(params))[1].tobytes()


@pytest.mark.parametrize(
    "params",
    [(), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), (cv2.IMWRITE_JPEG_RST_INTERVAL, 2)],
    ids=["baseline", "progressive", "restart-markers"],
)
def test_complete_jpeg_with_trailing_data_is_read(tmp_path, params):
    image, jpeg = _jpeg(120, 160, 0, params)
    # A camera trailer or motion-photo video: 64 KB holding JPEG markers of its own.
    trailer = np.random.RandomState(1).randint(0, 256, 1 << 16).astype(np.uint8).tobytes()
    path = str(tmp_path / "motion.jpg")
    with open(path, "wb") as f:
        f.write(jpeg + trailer + b"\xff\xd8\xff\xda\x00\x02")
    plain = str(tmp_path / "plain.jpg")
    with open(plain, "wb") as f:
        f.write(jpeg)
    np.testing.assert_array_equal(fileio.read_image(path), fileio.read_image(plain))


def test_truncated_jpeg_is_a_skip_even_with_a_thumbnail_end_marker(tmp_path):
    _, jpeg = _jpeg(400, 600, 2)
    _, thumb = _jpeg(30, 40, 3)
    exif = b"Exif\x00\x00" + thumb  # an APP1 segment holding a complete JPEG thumbnail
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    full = jpeg[:2] + app1 + jpeg[2:]
    path = str(tmp_path / "cut.jpg")
    for end in (len(full) - 2, len(full) // 2, len(app1) + 10, len(app1) - 100, 3):
        with open(path, "wb") as f:
            f.write(full[:end])
        with pytest.raises(fileio.Skip) as err:
            fileio.read_image(path)
        assert err.value.reason == fileio.TRUNCATED_IMAGE
    with open(path, "wb") as f:
        f.write(full)
    assert fileio.read_image(path).shape == (400, 600, 3)


def test_read_list_formats_and_duplicates(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("2007_000033\n\nJPEGImages/2007_000042.jpg SegmentationClass/x.png\n")
    assert fileio.read_list(str(lst)) == ["2007_000033", "2007_000042"]
    lst.write_text("a\nb\na\n")
    with pytest.raises(fileio.FileFormatError, match="duplicate ids: a"):
        fileio.read_list(str(lst))


def test_read_list_drops_a_byte_order_mark_and_keeps_dots_of_ids(tmp_path):
    lst = tmp_path / "l.txt"
    # As a Windows editor saves it: byte-order mark, CRLF line ends.
    lst.write_bytes(
        "\ufeff2007_000033\r\nimg.v2\r\nJPEGImages/x.v2.jpg\r\nA.JPG\r\n\u00e9t\u00e9\r\n".encode()
    )
    assert fileio.read_list(str(lst)) == ["2007_000033", "img.v2", "x.v2", "A", "\u00e9t\u00e9"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("a\nb\n".encode("utf-16"), "is UTF-16 text (it starts with a UTF-16 byte-order mark)"),
        ("a\nb\n".encode("utf-16-le"), "NUL byte at line 1: not UTF-8 text"),
        ("a\ncaf\u00e9\n".encode("latin-1"), "byte 0xe9 at line 2 is not UTF-8"),
        ("a\n\ufeffb\n".encode(), r"line 2: id '\ufeffb' holds the invisible character U+FEFF"),
        ("a\nb\u200bc\n".encode(), r"line 2: id 'b\u200bc' holds the invisible character U+200B"),
    ],
)
def test_list_that_is_not_utf8_text_is_an_error_naming_the_file(tmp_path, content, message):
    lst = tmp_path / "l.txt"
    lst.write_bytes(content)
    with pytest.raises(fileio.FileFormatError) as err:
        fileio.read_list(str(lst))
    assert str(err.value).startswith(str(lst)) and message in str(err.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"1": "cat",}', "is not valid JSON: Expecting property name"),
        (b"", "is not valid JSON: Expecting value"),
        ('{"1": "caf\u00e9"}'.encode("latin-1"), "byte 0xe9 at line 1 is not UTF-8"),
    ],
)
def test_read_json_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_bytes(content)
    with pytest.raises(fileio.FileFormatError) as err:
        fileio.read_json(str(path))
    assert str(err.value).startswith(str(path)) and message in str(err.value)
    path.write_bytes('\ufeff{"1": "caf\u00e9"}'.encode())  # a byte-order mark is dropped
    assert fileio.read_json(str(path)) == {"1": "caf\u00e9"}


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
