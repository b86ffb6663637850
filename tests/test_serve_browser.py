"""The page in a real browser: headless Debian chromium driven by Selenium against the service on loopback.

For each kind of model: a wav is uploaded and its transcript appears; with Chromium's fake microphone playing
the same wav, the record button streams it and the final transcript appears, after partial ones for a streaming
model. A screenshot goes to the test's
tmp dir, and also to $SERVE_SCREENSHOT when set (docs/serve.png was made so).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import soundfile

from lit_asr.inference.recognizer import Recognizer
from lit_asr.serve.app import create_app
from lit_asr.serve.server import BackgroundServer
from serve_common import serve_settings, speech_files, streaming_recognizer
from tiny_checkpoint import tiny_checkpoint

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver (installed by make setup)")
WAIT_S = 60
PHONE = {"width": 390, "height": 844, "pixelRatio": 2.0}  # CSS pixels of a mid-size phone


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def chromium(microphone: Path):
    """Headless Chromium emulating a phone's screen, with ``microphone`` as the fake capture device."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # a headless window is at least 500 px wide: the phone's width comes from device emulation
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=500,1000", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone}%noloop", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))


@pytest.mark.parametrize("kind", ["bidirectional", "streaming"])
def test_upload_and_record_in_a_real_browser(tiny, tmp_path, kind):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    speech = speech_files(tiny)[0]
    seconds = soundfile.info(str(speech)).duration
    model = Recognizer.from_checkpoint(tiny["checkpoint"], device="cpu") if kind == "bidirectional" else \
        streaming_recognizer(tiny, tmp_path)
    with model as recognizer:
        expected = recognizer.transcribe(speech).text or "(no speech recognised)"
        settings = serve_settings()
        with BackgroundServer(create_app(recognizer, settings), settings) as server:
            browser = chromium(speech)
            try:
                wait = WebDriverWait(browser, WAIT_S)
                text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731
                browser.get(server.url + "/")
                wait.until(lambda _: not text("model").startswith("loading"))
                assert "tokens" in text("model"), text("model")
                # nothing sticks out sideways on the phone's width
                assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE["width"]

                browser.find_element(By.ID, "file").send_keys(str(speech))
                browser.find_element(By.ID, "upload").click()
                wait.until(lambda _: text("upload-text"))
                assert text("upload-text") == expected
                assert "s of audio" in text("upload-status")

                record = browser.find_element(By.ID, "record")
                record.click()
                wait.until(lambda _: "Stop" in record.text or "error" in text("live-status"))
                assert "Stop" in record.text, text("live-status")
                partials = set()
                if recognizer.streaming:
                    wait.until(lambda _: text("live-partial"))
                    partials.add(text("live-partial"))
                end = time.monotonic() + seconds + 0.5  # the whole file plays into the stream
                while time.monotonic() < end:
                    partials.add(text("live-partial"))
                    time.sleep(0.05)
                record.click()
                wait.until(lambda _: text("live-final") or "error" in text("live-status"))
                status = text("live-status")
                assert text("live-final"), status
                assert "s of audio" in status, status
                assert float(status.split(" s of audio")[0]) >= seconds
                assert text("live-partial") == ""
                if recognizer.streaming:
                    assert partials - {""}, "no partial transcript appeared while recording"
                browser.save_screenshot(str(tmp_path / "serve.png"))
                if os.environ.get("SERVE_SCREENSHOT") and recognizer.streaming:
                    browser.save_screenshot(os.environ["SERVE_SCREENSHOT"])
            finally:
                browser.quit()
    assert (tmp_path / "serve.png").stat().st_size > 0
