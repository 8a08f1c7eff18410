"""Dataset builders: MS-COCO -> source dataset, PASCAL VOC (+SBD) -> target dataset, and the
built-in dataset generator. Record format: transfernet/records.py."""
