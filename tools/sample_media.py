"""Sample media made from real photos that scikit-image ships: nothing is downloaded.

``scene`` places a photo of a person before a plain wall (or another photo),
``video`` moves it across the frame, so a detector sees the same person in
different places frame after frame; ``image`` writes one photo as it is. Used by the tests, the benchmark and the demo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

PEOPLE = ("astronaut",)  # Eileen Collins' portrait: a person and a face
NO_PEOPLE = ("coffee", "chelsea", "rocket")


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as a BGR array."""
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)


def image(path: Path, name: str = "astronaut") -> Path:
    """Write a sample photo; the suffix picks the format (.jpg, .png, .webp)."""
    if not cv2.imwrite(str(path), photo(name)):
        raise ValueError(f"OpenCV cannot write {path.suffix} files")
    return path


def scene(
    subject: str = "astronaut", size: tuple[int, int] = (640, 480), height: int = 256, left: float = 0.5, background: str = "wall"
) -> np.ndarray:
    """``subject`` scaled to ``height`` pixels, centred at ``left`` of the width, before a plain wall or a photo (BGR)."""
    width, frame_height = size
    if background == "wall":
        frame = np.full((frame_height, width, 3), 90, np.uint8)
    else:
        frame = cv2.resize(photo(background), (width, frame_height))
    person = photo(subject)
    person = cv2.resize(person, (round(person.shape[1] * height / person.shape[0]), height))
    x = min(max(0, round(left * width - person.shape[1] / 2)), width - person.shape[1])
    y = (frame_height - height) // 2
    frame[y : y + height, x : x + person.shape[1]] = person
    return frame


def scene_image(path: Path, subject: str = "astronaut", **options: object) -> Path:
    """Write ``scene`` to ``path``; the suffix picks the format."""
    if not cv2.imwrite(str(path), scene(subject, **options)):  # type: ignore[arg-type]
        raise ValueError(f"OpenCV cannot write {path.suffix} files")
    return path


def video(
    path: Path,
    frames: int = 90,
    fps: float = 30.0,
    size: tuple[int, int] = (640, 480),
    subject: str = "astronaut",
    background: str = "wall",
) -> Path:
    """``subject`` walking left to right across ``background``. ``.avi`` is Motion-JPEG, ``.mp4`` is MPEG-4 part 2."""
    width, height = size
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for index in range(frames):
            progress = index / max(1, frames - 1)
            writer.write(scene(subject, size, height=round(height * 0.53), left=0.2 + 0.6 * progress, background=background))
    finally:
        writer.release()
    return path


def long_video(
    path: Path,
    seconds: float = 180.0,
    fps: float = 10.0,
    size: tuple[int, int] = (160, 120),
    red_between: tuple[float, float] | None = None,
) -> Path:
    """A cheap synthetic video of ``seconds``: a bright square moving over a dark field, visible in about half the frames.

    Small and Motion-JPEG (``.avi``), so minutes of it write in seconds; long enough to be split into segments.
    ``red_between`` (seconds) paints those frames plain red: the tests' detector reads them as corrupt frame data.
    """
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    side = max(4, height // 5)
    try:
        for index in range(round(seconds * fps)):
            frame = np.full((height, width, 3), 30, np.uint8)
            if (index // round(fps * 7)) % 2 == 0:  # shown for 7 s, hidden for 7 s
                x = (index * 3) % (width - side)
                y = (index * 2) % (height - side)
                frame[y : y + side, x : x + side] = 235
            cv2.putText(frame, str(index), (2, height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (120, 120, 120), 1)
            if red_between and red_between[0] <= index / fps < red_between[1]:
                frame[:] = (0, 0, 255)
            writer.write(frame)
    finally:
        writer.release()
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description="Write sample media made from scikit-image's photos.")
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    for written in (
        scene_image(args.folder / "person.jpg"),
        image(args.folder / "portrait.jpg"),
        image(args.folder / "coffee.png", "coffee"),
        video(args.folder / "street.mp4", frames=150),
        long_video(args.folder / "long-walk.avi", seconds=180),
    ):
        print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
