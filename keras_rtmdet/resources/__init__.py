"""Data files shipped with the package (declared as package data in pyproject.toml).

`det_mini_linear/`: the reference fixture that `rtmdet parity` checks
against: a tiny RTMDet with RANDOM weights recorded with MMDetection 3.3.0
(`meta.json` says how), its checkpoint, two 160×160 images
(`inputs.npz`) and mmdet's detections for them (`preds.npz`). The test suite
reads the same files through links in `tests/fixtures/det_mini_linear`, next
to the fixture's intermediate arrays (`features.npz`, `head.npz`), which only
the tests need.
"""
