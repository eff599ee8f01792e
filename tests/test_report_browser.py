"""gpupipe report in a real browser: Debian's headless Chromium, driven by Selenium through chromium-driver.

One page for the module, written by ``gpupipe report`` from jobs in the emulator: a video annotated in one pass
(street.mp4), a long video annotated in segments and joined by the merge, an image, and a failed job whose key
and reason are hostile markup. One browser session for the module: the tests look at that page.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpupipe.cli import main
from pipeline_core.segment_plan import plan_segments
from tests.support import reports
from tests.support.aws import StepStack
from tools.sample_media import image, long_video, video
from worker.registry import load_processor

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
HOSTILE_KEY = "uploads/<script>window.pwned = 1</script><img src=x onerror=window.pwned=2>.mp4"
HOSTILE_REASON = 'not a supported image or video (<b id="bold">first bytes</b>)'


@pytest.fixture(scope="module")
def report_page(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("report")
    stack = StepStack.create(moto_endpoint)
    processor = load_processor("detect", {"detectors": [{"name": "people-hog"}], "sample_fps": 2}, annotate=True)
    street = video(folder / "street.mp4", frames=150)
    walk = long_video(folder / "long-walk.avi", seconds=12, fps=10, size=(320, 240))
    photo = image(folder / "person.jpg", "astronaut")
    segments = plan_segments(processor.timeline(walk), 5)  # type: ignore[attr-defined]
    assert len(segments) >= 2
    ids = {
        "street": reports.succeeded(stack, "uploads/street.mp4", street, reports.run(processor, street, folder / "w1")),
        "long": reports.succeeded(stack, "uploads/long-walk.avi", walk, reports.run(processor, walk, folder / "w2", segments)),
        "photo": reports.succeeded(stack, "uploads/person.jpg", photo, reports.run(processor, photo, folder / "w3")),
        "hostile": reports.failed(stack, HOSTILE_KEY, b"junk", HOSTILE_REASON),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
        assert main(["--outputs", str(reports.outputs_file(stack, folder)), "report", "--out", str(folder / "site")]) == 0
    yield folder / "site" / "index.html", ids


@pytest.fixture(scope="module")
def browser(report_page: tuple[Path, dict[str, str]]) -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400", "--mute-audio"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(report_page[0].as_uri())
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, script: str, *args: Any, timeout: float = 20) -> Any:
    """Poll a script until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


VIDEO = "var v = document.querySelector('#job-' + arguments[0] + ' video'); "  # the job's video as v; a script follows


@pytest.mark.parametrize("job", ["street", "long"])
def test_the_annotated_h264_video_loads_and_seeks(browser: Any, report_page: tuple[Path, dict[str, str]], job: str) -> None:
    job_id = report_page[1][job]
    state = wait_for(browser, VIDEO + "return v.readyState >= 2 && v.duration > 0;", job_id)
    video_state = browser.execute_script(
        VIDEO + "return {ready: v.readyState, duration: v.duration, error: v.error && v.error.code,"
        " width: v.videoWidth, h264: v.canPlayType('video/mp4; codecs=\"avc1.64001e\"')};",
        job_id,
    )
    assert state, f"the video never loaded: {video_state}"
    assert video_state["error"] is None and video_state["width"] > 0 and video_state["h264"] in ("probably", "maybe")
    expected = 5.0 if job == "street" else 12.0
    assert video_state["duration"] == pytest.approx(expected, abs=0.6)
    browser.execute_script(VIDEO + "v.currentTime = arguments[1];", job_id, expected * 0.6)
    assert wait_for(
        browser,
        VIDEO + "return !v.seeking && v.readyState >= 2 && Math.abs(v.currentTime - arguments[1]) < 0.2;",
        job_id,
        expected * 0.6,
    )


def test_clicking_the_timeline_moves_current_time(browser: Any, report_page: tuple[Path, dict[str, str]]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    job_id = report_page[1]["long"]
    svg = browser.find_element("css selector", f"#job-{job_id} svg.timeline")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", svg)
    browser.execute_script(VIDEO + "v.pause(); v.currentTime = 0;", job_id)
    width = svg.size["width"]
    duration = float(svg.get_attribute("data-duration"))
    # A point three quarters along: offsets are from the element's centre.
    ActionChains(browser).move_to_element_with_offset(svg, round(width * 0.25), svg.size["height"] // 2 - 2).click().perform()
    moved = wait_for(browser, VIDEO + "return !v.seeking && v.currentTime > 0 && v.currentTime;", job_id)
    assert moved == pytest.approx(0.75 * duration, abs=0.05 * duration)


def test_a_hostile_key_and_reason_render_as_text(browser: Any, report_page: tuple[Path, dict[str, str]]) -> None:
    job_id = report_page[1]["hostile"]
    assert browser.execute_script("return window.pwned === undefined;")
    assert browser.execute_script("return document.getElementById('bold') === null;")
    assert browser.find_element("css selector", f"#job-{job_id} code.key-full").text == HOSTILE_KEY
    assert browser.find_element("css selector", f"#job-{job_id} .reason").text == HOSTILE_REASON
    assert f"gpupipe retry {job_id}" in browser.find_element("css selector", f"#job-{job_id} code.retry").text


def test_the_page_works_offline_and_takes_a_screenshot(browser: Any, report_page: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    page = report_page[0].read_text()
    assert "http://" not in page and "https://" not in page  # no CDN, nothing fetched
    loaded = browser.execute_script("return Array.from(document.images).every(function (i) { return i.complete && i.naturalWidth > 0; });")
    assert loaded, "an image of the page did not load"
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000


def test_report_failed_lists_reasons_and_retry_commands(
    moto_endpoint: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    stack = StepStack.create(moto_endpoint)
    job_id = reports.failed(stack, "uploads/broken.mp4", b"junk", "not a supported image or video (first bytes 6a756e6b)")
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    assert main(["--outputs", str(reports.outputs_file(stack, tmp_path)), "report", "--failed", "--out", str(tmp_path / "site")]) == 0
    out = capsys.readouterr().out
    assert f"{job_id}  uploads/broken.mp4\n    detect: not a supported image or video" in out
    assert f"retry: gpupipe retry {job_id}" in out
    assert json.dumps(job_id)[1:-1] in (tmp_path / "site" / "index.html").read_text()


def test_report_upload_puts_the_page_beside_the_results_with_presigned_videos(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = StepStack.create(moto_endpoint)
    street, output = reports.street_output(tmp_path)
    reports.succeeded(stack, "uploads/street.mp4", street, output)
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    argv = [
        "--outputs",
        str(reports.outputs_file(stack, tmp_path)),
        "report",
        "--upload",
        "--expires",
        "600",
        "--out",
        str(tmp_path / "site"),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    uploaded = next(line for line in printed if line.startswith("uploaded: "))
    key = uploaded.split(f"s3://{stack.bucket}/", 1)[1]
    page = stack.aws["s3"].get_object(Bucket=stack.bucket, Key=key)
    assert key.startswith("results/reports/") and page["ContentType"].startswith("text/html")
    text = page["Body"].read().decode()
    video = text.split('<video class="annotated"', 1)[1].split('src="', 1)[1].split('"', 1)[0]
    assert "annotated.mp4" in video and "Signature" in video and "Expires" in video
    assert printed[-1].startswith(stack.endpoint) and "Signature" in printed[-1]
