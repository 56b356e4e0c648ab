"""The 15 DOTA-v1.0 classes, in MMRotate's label order."""

DOTA_CLASSES = (
    "plane",
    "baseball-diamond",
    "bridge",
    "ground-track-field",
    "small-vehicle",
    "large-vehicle",
    "ship",
    "tennis-court",
    "basketball-court",
    "storage-tank",
    "soccer-ball-field",
    "roundabout",
    "harbor",
    "swimming-pool",
    "helicopter",
)

# Classes annotated as axis-aligned boxes: RandomRotate turns images holding them by multiples of 90°.
DOTA_RECT_CLASSES = ("storage-tank", "roundabout")
