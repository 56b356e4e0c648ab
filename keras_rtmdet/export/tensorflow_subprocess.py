"""`python -m keras_rtmdet.export.tensorflow_subprocess PRESET_DIR FORMAT PATH SETTINGS_JSON`: export in TF.

`export_in_tensorflow` runs it with `KERAS_BACKEND=tensorflow` for a torch or JAX model, whose
SavedModel TensorFlow must trace: the model comes back from the preset that process saved (its
weights and post-processing settings), the settings are `export`'s keyword arguments.
"""

import json
import sys

from keras_rtmdet.export.export import export
from keras_rtmdet.models.dense_detector import DenseDetector


def export_preset(preset_dir, format, path, settings):
    """`export` the detector saved in `preset_dir`; `settings["input_size"]` None serves any size."""
    model = DenseDetector.from_preset(preset_dir)
    return export(model, path, format=format, dynamic_size=settings["input_size"] is None, **settings)


if __name__ == "__main__":
    preset_dir, format, path, settings = sys.argv[1:]
    export_preset(preset_dir, format, path, json.loads(settings))
