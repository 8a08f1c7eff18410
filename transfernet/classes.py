"""Class tables: VOC 2012 ids 1..20, the 60 non-PASCAL COCO categories -> ids 21..80.

The paper (Sec. 5.1) keeps the 20 PASCAL categories as the target domain and uses the
other 60 COCO categories as the source domain; label vectors have NUM_CLASSES entries,
index = class id - 1.
"""

NUM_CLASSES = 80
BACKGROUND = 0
IGNORE = 255

# PASCAL VOC 2012 order: class id = position + 1.
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# All 80 COCO categories, (COCO category id, name), in COCO category-id order.
COCO_CATEGORIES = (
    (1, "person"),
    (2, "bicycle"),
    (3, "car"),
    (4, "motorcycle"),
    (5, "airplane"),
    (6, "bus"),
    (7, "train"),
    (8, "truck"),
    (9, "boat"),
    (10, "traffic light"),
    (11, "fire hydrant"),
    (13, "stop sign"),
    (14, "parking meter"),
    (15, "bench"),
    (16, "bird"),
    (17, "cat"),
    (18, "dog"),
    (19, "horse"),
    (20, "sheep"),
    (21, "cow"),
    (22, "elephant"),
    (23, "bear"),
    (24, "zebra"),
    (25, "giraffe"),
    (27, "backpack"),
    (28, "umbrella"),
    (31, "handbag"),
    (32, "tie"),
    (33, "suitcase"),
    (34, "frisbee"),
    (35, "skis"),
    (36, "snowboard"),
    (37, "sports ball"),
    (38, "kite"),
    (39, "baseball bat"),
    (40, "baseball glove"),
    (41, "skateboard"),
    (42, "surfboard"),
    (43, "tennis racket"),
    (44, "bottle"),
    (46, "wine glass"),
    (47, "cup"),
    (48, "fork"),
    (49, "knife"),
    (50, "spoon"),
    (51, "bowl"),
    (52, "banana"),
    (53, "apple"),
    (54, "sandwich"),
    (55, "orange"),
    (56, "broccoli"),
    (57, "carrot"),
    (58, "hot dog"),
    (59, "pizza"),
    (60, "donut"),
    (61, "cake"),
    (62, "chair"),
    (63, "couch"),
    (64, "potted plant"),
    (65, "bed"),
    (67, "dining table"),
    (70, "toilet"),
    (72, "tv"),
    (73, "laptop"),
    (74, "mouse"),
    (75, "remote"),
    (76, "keyboard"),
    (77, "cell phone"),
    (78, "microwave"),
    (79, "oven"),
    (80, "toaster"),
    (81, "sink"),
    (82, "refrigerator"),
    (84, "book"),
    (85, "clock"),
    (86, "vase"),
    (87, "scissors"),
    (88, "teddy bear"),
    (89, "hair drier"),
    (90, "toothbrush"),
)

# The 20 COCO categories that are PASCAL categories (COCO names), VOC name -> COCO name.
VOC_TO_COCO_NAME = {
    "aeroplane": "airplane",
    "bicycle": "bicycle",
    "bird": "bird",
    "boat": "boat",
    "bottle": "bottle",
    "bus": "bus",
    "car": "car",
    "cat": "cat",
    "chair": "chair",
    "cow": "cow",
    "diningtable": "dining table",
    "dog": "dog",
    "horse": "horse",
    "motorbike": "motorcycle",
    "person": "person",
    "pottedplant": "potted plant",
    "sheep": "sheep",
    "sofa": "couch",
    "train": "train",
    "tvmonitor": "tv",
}
PASCAL_COCO_NAMES = frozenset(VOC_TO_COCO_NAME.values())
# COCO name -> VOC name where they differ: a dataset spec's "overlaps" for the paper's split (the
# others match by name).
PAPER_OVERLAPS = {coco: voc for voc, coco in VOC_TO_COCO_NAME.items() if coco != voc}

COCO_NAME_BY_ID = dict(COCO_CATEGORIES)
PASCAL_COCO_IDS = frozenset(i for i, n in COCO_CATEGORIES if n in PASCAL_COCO_NAMES)

# The 60 non-PASCAL COCO categories -> TransferNet ids 21..80 in COCO category-id order.
COCO60_ID = {
    coco_id: len(VOC_CLASSES) + 1 + k
    for k, coco_id in enumerate(i for i, n in COCO_CATEGORIES if n not in PASCAL_COCO_NAMES)
}

VOC_ID = {name: k + 1 for k, name in enumerate(VOC_CLASSES)}

# TransferNet id -> name for all 80 classes (VOC names for 1..20, COCO names for 21..80).
CLASS_NAMES = {VOC_ID[n]: n for n in VOC_CLASSES}
CLASS_NAMES.update((tid, COCO_NAME_BY_ID[cid]) for cid, tid in COCO60_ID.items())

assert len(COCO_CATEGORIES) == 80 and len(PASCAL_COCO_IDS) == 20
assert sorted(COCO60_ID.values()) == list(range(21, NUM_CLASSES + 1))


def check_coco_categories(categories, source):
    """Check a COCO JSON's `categories` against the fixed 80-category table.

    Raises ValueError naming `source` on an id that is not a COCO category or whose name
    differs from COCO's (a relabelled JSON would silently shift every class id).
    """
    for cat in categories:
        cid, name = cat.get("id"), cat.get("name")
        if cid not in COCO_NAME_BY_ID:
            raise ValueError(
                "%s: category id %r (%r) is not one of the 80 COCO category ids"
                % (source, cid, name)
            )
        if COCO_NAME_BY_ID[cid] != name:
            raise ValueError(
                "%s: category id %d is named %r, COCO names it %r"
                % (source, cid, name, COCO_NAME_BY_ID[cid])
            )
