"""Detect objects in one image file with an official RTMDet preset.

    python examples/detect_image.py photo.jpg --preset rtmdet_s_coco --out detections.jpg
"""

import argparse

import numpy as np

import keras_rtmdet
from keras_rtmdet.utils.drawing import draw_detections
from keras_rtmdet.utils.image_io import read_image
from keras_rtmdet.utils.image_io import write_image


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("image")
    parser.add_argument("--preset", default="rtmdet_s_coco")
    parser.add_argument("--score-thr", type=float, default=0.3)
    parser.add_argument("--out", default="detections.jpg")
    args = parser.parse_args()

    model = keras_rtmdet.DenseDetector.from_preset(args.preset)
    image = read_image(args.image)
    out = model.predict(image, score_threshold=args.score_thr, verbose=0)
    n = int(out["num_detections"][0])
    for box, score, label in zip(out["boxes"][0, :n], out["scores"][0, :n], out["labels"][0, :n]):
        print(f"{model.class_names[label]:>14s} {score:.3f} {np.round(box, 1).tolist()}")
    drawn = draw_detections(image, out["boxes"][0, :n], out["scores"][0, :n], out["labels"][0, :n], model.class_names)
    write_image(args.out, drawn)


if __name__ == "__main__":
    main()
