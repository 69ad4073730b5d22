"""How to read every metric a report may hold: its ideal value, direction, kind and the default
model's target (``METRICS``, ``metric_info``). The metrics themselves are in ``world.metrics``."""

from __future__ import annotations

import math
from dataclasses import dataclass

PSNR_CAP = 100.0  # dB, reported for identical videos instead of infinity


@dataclass(frozen=True)
class MetricInfo:
    """How to read a reported metric: its ideal value, whether higher is better, its kind
    ("fraction" in [0, 1], "ratio" with ideal 1, or "dB"), and the target the default model
    aims at (None = no target), met when the value is >= target (or <= for lower-is-better)."""
    ideal: float
    higher_is_better: bool
    kind: str
    target: float | None
    description: str

    def meets(self, value: float | None) -> bool | None:
        if self.target is None or value is None or not math.isfinite(value):
            return None
        return value >= self.target if self.higher_is_better else value <= self.target


def _m(ideal, higher, kind, target, text):
    return MetricInfo(float(ideal), higher, kind, target, text)


# every name a report may hold; "structure_iou@0.50" style names take the info of "structure_iou"
METRICS: dict[str, MetricInfo] = {
    # name: _m(ideal, higher is better, kind, target, what it measures)
    "colour": _m(1, True, "fraction", 0.9, "fraction of asked-for objects seen with the colour asked for"),
    "shape": _m(1, True, "fraction", 0.8, "fraction of asked-for objects seen with the shape asked for"),
    "size": _m(1, True, "fraction", None, "fraction of asked-for objects seen with the size asked for"),
    "motion": _m(1, True, "fraction", 0.8,
                 "fraction of asked-for objects seen moving as asked (left/right/up/down/bouncing/static)"),
    "count": _m(1, True, "fraction", None, "1 when exactly as many objects are seen at once as asked for "
                "(the most seen together in two consecutive frames; touching parts in neighbouring "
                "palette colours are one object in two shades)"),
    "tracks": _m(1, True, "fraction", None, "1 when exactly as many object identities are tracked as asked "
                 "for (an object whose colour or shape reading changes can count twice)"),
    "background": _m(1, True, "fraction", None,
                     "1 when the background seen has the kind and colours asked for (solid / gradient / landscape)"),
    "event": _m(1, True, "fraction", None,
                "1 when the world event seen (occluder, trail, camera pan, none) is the one asked for"),
    "temporal_flicker": _m(1, True, "fraction", None,
                           "VBench temporal flickering: (255 - mean |frame[t+1] - frame[t]|) / 255"),
    "object_permanence": _m(1, True, "fraction", None, "fraction of objects gone behind the occluder "
                            "that come back with the same colour, shape and size"),
    "identity_drift": _m(0, False, "fraction", None,
                         "fraction of tracked objects whose colour, shape or size changes along the video"),
    "colour_constant": _m(1, True, "fraction", 0.95,
                          "1 when every tracked object keeps its colour from frame to frame through the clip"),
    "shape_constant": _m(1, True, "fraction", None,
                         "1 when every tracked object keeps its shape from frame to frame through the clip"),
    "loop_seam_ratio": _m(1, False, "ratio", 1.5,
                          "difference last -> first frame over the mean consecutive difference"),
    "boundary_continuity": _m(1, False, "ratio", 1.5,
                              "difference across the join over the mean consecutive difference around it"),
    "transition_smoothness": _m(1, False, "ratio", None,
                                "largest consecutive difference over the mean one, across the transition"),
    "structure_iou": _m(1, True, "fraction", 0.5,
                        "object-mask IoU of the SDEdit output with its source (@ = strength)"),
    "first_frame_psnr": _m(PSNR_CAP, True, "dB", 25.0, "PSNR of the first frame against the given image"),
    "psnr": _m(PSNR_CAP, True, "dB", 30.0, "PSNR of the VAE reconstruction (100 = identical)"),
    "ssim": _m(1, True, "fraction", None, "SSIM of the VAE reconstruction"),
    # the long task (sora_core.evaluation.long): per window of a long video
    "colour_kept": _m(1, True, "fraction", 0.95, "fraction of windows with every asked-for object in its colour"),
    "shape_kept": _m(1, True, "fraction", 0.9, "fraction of windows with every asked-for object in its shape"),
    "size_kept": _m(1, True, "fraction", None, "fraction of windows with every asked-for object in its size"),
    "count_kept": _m(1, True, "fraction", 0.9, "fraction of windows with exactly the asked number of objects, "
                     "when the first window had it"),
    "object_colour_shift": _m(0, False, "levels", 6.0, "mean colour change of the object pixels, first vs "
                              "last 5 s (grey levels)"),
    "background_colour_shift": _m(0, False, "levels", 6.0, "mean colour change of the background, first vs "
                                  "last 5 s (grey levels)"),
    "joins_smooth": _m(1, True, "fraction", 1.0, "fraction of window joins with boundary continuity <= 1.5"),
    "colour_same": _m(1, True, "fraction", None, "fraction of later windows whose objects keep the colour "
                      "seen in the first window"),
    "shape_same": _m(1, True, "fraction", None, "fraction of later windows whose objects keep the shape seen "
                     "in the first window"),
    "size_same": _m(1, True, "fraction", None, "fraction of later windows whose objects keep the size seen in "
                    "the first window"),
}


def metric_info(name: str) -> MetricInfo:
    """The MetricInfo of a reported name (``"structure_iou@0.50"`` -> ``"structure_iou"``)."""
    base = name.split("@")[0]
    if base not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    info = METRICS[base]
    if base == "structure_iou" and "@" in name and abs(float(name.split("@")[1]) - 0.5) > 1e-6:
        return MetricInfo(info.ideal, info.higher_is_better, info.kind, None, info.description)
    return info
