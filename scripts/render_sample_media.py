"""Render the sample media the workflows in workflows/ load, with the project's own world renderer.

    python scripts/render_sample_media.py            # writes workflows/media/*.mp4 / *.png

The clips are at the default model's main training size (64 x 64, 17 frames at 8 fps) and are made
from prompts through ``world.expand.prompt_to_scene``, so each file has a known caption. Existing
files are kept: delete one to render it again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import sora_core  # noqa: F401
except ImportError:                       # not installed: use the checkout this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sora_core.media import video_io
from sora_core.world import captions, render
from sora_core.prompts import expand

OUT = Path(__file__).resolve().parent.parent / "workflows" / "media"
SIZE = dict(width=64, height=64, frames=17, fps=8.0)

# file name -> (prompt, seed); .png files keep the first frame only
SAMPLES = {
    "red_ball_right.mp4": ("a large red ball moving right", 3),
    "blue_box_down.mp4": ("a large blue box moving down", 5),
    "yellow_ball.png": ("a large yellow ball, static", 7),
}


def render_sample(name: str, prompt: str, seed: int, out: Path) -> Path | None:
    path = out / name
    if path.exists():
        return None
    spec = expand.prompt_to_scene(prompt, seed, **SIZE)
    frames = render.render(spec)
    if path.suffix == ".png":
        written = video_io.write_image(path, frames[0])
    else:
        written = video_io.write_video(path, frames, SIZE["fps"], crf=10)
    print(f"{written.name}: {captions.long_caption(spec)}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write into")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (prompt, seed) in SAMPLES.items():
        if render_sample(name, prompt, seed, args.out) is None:
            print(f"{name}: exists, kept")


if __name__ == "__main__":
    main()
