"""A screenshot of a report page in headless Chromium (Debian's chromium and chromium-driver, through Selenium).

    python -m tools.screenshot PAGE.html OUT.png [--width 1280] [--height 1500] [--seek SECONDS]

Waits for every video to load (and seeks each to ``--seek`` seconds, so the shot shows boxes), then saves
the window. ``make demo`` and docs/images/report.png use it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

READY = """
var videos = Array.from(document.querySelectorAll('video'));
return videos.every(function (v) { return v.readyState >= 2 && !v.seeking; });
"""
SEEK = "var t = arguments[0]; document.querySelectorAll('video').forEach(function (v) { v.currentTime = Math.min(t, v.duration / 2); });"


def browser(width: int, height: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        raise SystemExit("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--mute-audio",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def shoot(page: Path, out: Path, width: int = 1280, height: int = 1500, seek: float | None = None, timeout: float = 30) -> Path:
    driver = browser(width, height)
    try:
        driver.get(page.resolve().as_uri())
        deadline = time.monotonic() + timeout
        while not driver.execute_script(READY) and time.monotonic() < deadline:
            time.sleep(0.2)
        if seek is not None:
            driver.execute_script(SEEK, seek)
            time.sleep(0.3)
            while not driver.execute_script(READY) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.3)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--seek", type=float, default=None, help="seconds to seek every video to before the shot")
    args = parser.parse_args(argv)
    print(shoot(args.page, args.out, args.width, args.height, args.seek))
    return 0


if __name__ == "__main__":
    sys.exit(main())
