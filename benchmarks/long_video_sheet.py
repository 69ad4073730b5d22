"""Contact sheet of a whole long video: one frame per second in a grid, each labelled with its time.

    python benchmarks/long_video_sheet.py minute.mp4 docs/images/long_video_minute.png --title "..."

Frames are enlarged (nearest) so the 64x64 default-model frames can be seen; a title line goes above.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sheet(frames: np.ndarray, fps: float, columns: int = 10, scale: int = 2, title: str = "") -> np.ndarray:
    """uint8 (H', W', 3): frames 0, fps, 2 fps ... of (T, H, W, 3) in rows of ``columns``."""
    picks = list(range(0, len(frames), max(1, int(round(fps)))))
    t, h, w, _ = frames.shape
    tiles = []
    for i in picks:
        tile = cv2.resize(frames[i], (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
        tile = cv2.copyMakeBorder(tile, 16, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(tile, f"{i / fps:g} s", (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (90, 90, 90), 1, cv2.LINE_AA)
        tiles.append(tile)
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[k:k + columns], axis=1) for k in range(0, len(tiles), columns)]
    grid = np.concatenate(rows, axis=0)
    head = np.full((24, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(head, title, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([head, grid], axis=0)


def main(argv=None) -> int:
    from sora_core.media.video_io import read_video, write_image
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video")
    p.add_argument("out")
    p.add_argument("--title", default="")
    p.add_argument("--columns", type=int, default=10)
    a = p.parse_args(argv)
    frames, fps = read_video(a.video)
    written = write_image(a.out, sheet(frames, fps, a.columns, title=a.title))
    print(f"wrote {written}: {len(frames)} frames at {fps:g} fps, one a second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
