"""`mlmodel ui` in headless Chromium (Debian's chromium + chromium-driver, through selenium):
the walk from models to an artifact, deploy and rollback by clicking, a digit drawn with the mouse
and predicted by a real `serving start`, the hostile name, and an action without the token.

Every page is checked for console errors and failed requests. With $MNIST_TFX_UI_SCREENSHOTS set
to a folder (docs/ui for the README), each page is saved there as a PNG.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system_parts import require
from tests.ui.conftest import TOKEN, XSS_NAME, Console

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOTS = os.environ.get("MNIST_TFX_UI_SCREENSHOTS", "")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require("chromium")
    require("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--disable-extensions"):
        options.add_argument(argument)
    options.binary_location = str(shutil.which("chromium"))
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait_for(driver: Any, css: str, seconds: float = 60) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def images_loaded(driver: Any, seconds: float = 300) -> None:
    """Every <img> finished loading, and none is broken (the figures are drawn on first view)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, seconds, poll_frequency=0.5).until(lambda d: d.execute_script(
        "return Array.from(document.images).every(i => i.complete)"))
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !i.naturalWidth).map(i => i.src)")
    assert not broken, broken


def clean_console(driver: Any, allowed: tuple[str, ...] = ()) -> None:
    """No console errors and no failed requests (Chromium logs those as SEVERE)."""
    entries = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    unexpected = [e["message"] for e in entries if not any(a in e["message"] for a in allowed)]
    assert not unexpected, unexpected


def shot(driver: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return Math.min(document.body.scrollHeight, 2400)")
        driver.set_window_size(1280, max(700, int(height)))
        driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))
        driver.set_window_size(1280, 1000)


def click(driver: Any, css: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, css).click()


def test_walk_models_model_lineage_artifact(browser: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{console.url}/?token={TOKEN}")  # holds the token from here on (a cookie)
    wait_for(browser, "table#models")
    assert "token=" not in browser.current_url
    clean_console(browser)
    shot(browser, "models")
    browser.find_element(By.LINK_TEXT, console.model).click()
    wait_for(browser, "#model-name")
    images_loaded(browser)
    clean_console(browser)
    shot(browser, "model")
    click(browser, "#lineage-link")
    wait_for(browser, "svg[aria-label='lineage graph']")
    clean_console(browser)
    shot(browser, "lineage")
    nodes = {a.text: a.get_attribute("href")
             for a in browser.find_elements(By.CSS_SELECTOR, "#lineage-nodes a")}
    assert {"Examples", "ExampleStatistics", "Schema", "ExampleAnomalies", "TransformGraph",
            "Model", "ModelEvaluation", "ModelBlessing", "PushedModel", "Deployment"} <= set(nodes)
    # Click the graph's own box for the raw Examples (the first Examples node).
    box = browser.find_element(By.CSS_SELECTOR, "svg a.node.artifact")
    assert box.find_element(By.CSS_SELECTOR, "text").text == "Examples"
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))",
                           box)
    wait_for(browser, "#artifact-uri")
    images_loaded(browser)
    assert browser.find_element(By.ID, "gallery").get_attribute("naturalWidth") != "0"
    clean_console(browser)
    shot(browser, "artifact")
    browser.get(f"{console.url}/runs")
    wait_for(browser, "table#runs")
    clean_console(browser)
    shot(browser, "runs")
    browser.find_element(By.CSS_SELECTOR, "table#runs tbody tr:last-child a").click()
    wait_for(browser, "svg[aria-label='component graph']")
    clean_console(browser)
    shot(browser, "run")


def current_version(browser: Any) -> str:
    return browser.find_element("id", "current-version").text


def test_deploy_then_roll_back_by_clicking(browser: Any, console: Console) -> None:
    browser.get(f"{console.url}/models/{console.model}")
    wait_for(browser, "#model-name")
    before = int(current_version(browser))
    click(browser, "#deploy")
    wait_for(browser, "#confirm")
    shot(browser, "confirm")
    click(browser, "#confirm")
    wait_for(browser, "#done")
    assert f"deployed version {before + 1}" in browser.find_element("id", "done").text
    assert current_version(browser) == str(before + 1)
    rows = browser.find_elements("css selector", "table#versions tbody tr")
    assert rows[0].get_attribute("data-version") == str(before + 1)
    clean_console(browser)
    click(browser, "#rollback")
    wait_for(browser, "#confirm")
    click(browser, "#confirm")
    wait_for(browser, "#done")
    assert f"rolled back to version {before}" in browser.find_element("id", "done").text
    assert current_version(browser) == str(before)
    history = browser.find_element("id", "history-table").text
    assert "rollback" in history and "ui" in history
    clean_console(browser)


def draw_digit(browser: Any) -> None:
    """A '1' and a bar, drawn with real mouse events (pointerdown, moves, pointerup)."""
    from selenium.webdriver.common.action_chains import ActionChains

    pad = browser.find_element("id", "pad")
    actions = ActionChains(browser, duration=20)
    actions.move_to_element_with_offset(pad, 0, -100).click_and_hold()
    for _ in range(10):
        actions.move_by_offset(0, 20)
    actions.release()
    actions.move_to_element_with_offset(pad, -60, 100).click_and_hold()
    for _ in range(6):
        actions.move_by_offset(20, 0)
    actions.release().perform()


def test_draw_a_digit_and_get_a_prediction_from_a_real_server(browser: Any,
                                                              console: Console) -> None:
    browser.get(f"{console.url}/predict?model={console.model}")
    wait_for(browser, "#pad")
    draw_digit(browser)
    inked = browser.execute_script(
        "const d = document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280)"
        ".data; let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 128) n++; return n;")
    assert inked > 500, "the mouse strokes should have drawn on the canvas"
    click(browser, "#send")
    prediction = wait_for(browser, "#prediction", 120)
    bars = browser.find_elements("css selector", "#bars .bar")
    assert len(bars) == 10 and prediction.text in {b.get_attribute("data-class") for b in bars}
    assert console.model in browser.find_element("id", "status").text
    clean_console(browser)
    shot(browser, "predict")


def test_a_dropped_image_file_through_serving_default(browser: Any, console: Console,
                                                     tmp_path: Path) -> None:
    """The file input (what a drop does), and the other signature: 28 x 28 greys."""
    import numpy as np
    from PIL import Image
    from selenium.webdriver.support.ui import Select

    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 12:16] = 255
    path = tmp_path / "one.jpg"
    Image.fromarray(digit).save(path, format="JPEG")
    browser.get(f"{console.url}/predict?model={console.model}")
    wait_for(browser, "#pad")
    Select(browser.find_element("id", "signature")).select_by_value("serving_default")
    browser.find_element("id", "file").send_keys(str(path))
    prediction = wait_for(browser, "#prediction", 120)
    assert prediction.text and "serving_default" in browser.find_element("id", "status").text
    assert len(browser.find_elements("css selector", "#bars .bar")) == 10
    clean_console(browser)


def test_no_server_is_said_plainly(browser: Any, console: Console, tiny_pipeline_run,
                                   tmp_path: Path) -> None:
    from tests.ui.conftest import start_console, stop

    lonely = start_console(console.metadata, console.serving_dir, console.model,
                           tiny_pipeline_run.pipeline_root, "http://127.0.0.1:9",
                           tmp_path / "ui.log")
    try:
        browser.get(f"{lonely.url}/predict?model={console.model}")
        wait_for(browser, "#pad")
        draw_digit(browser)
        click(browser, "#send")
        wait_for(browser, "#no-server:not([hidden])", 60)
        text = browser.find_element("id", "no-server").text
        assert "no model server answers at http://127.0.0.1:9" in text and "serving start" in text
        clean_console(browser, allowed=("/api/predict",))  # the 503 itself
    finally:
        stop(lonely.proc)


def test_hostile_name_is_text_and_actions_need_the_token(browser: Any, console: Console) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    browser.get(f"{console.url}/models?q=script")
    wait_for(browser, "table#models")
    link = browser.find_element(By.CSS_SELECTOR, "a.model-link")
    assert link.text == XSS_NAME
    time.sleep(0.5)  # any injected script would have run by now
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert browser.execute_script("return document.querySelectorAll('main script').length") == 0
    clean_console(browser)
    shot(browser, "escaped-name")
    # Without the token (a fresh browser profile has none): the change is refused.
    browser.delete_all_cookies()
    browser.get(f"{console.url}/models/{console.model}")
    wait_for(browser, "#model-name")
    before = current_version(browser)
    click(browser, "#deploy")
    wait_for(browser, "#confirm")
    assert "refuse the change" in browser.find_element(By.CSS_SELECTOR, ".warn").text
    click(browser, "#confirm")
    message = wait_for(browser, "#error-message").text
    assert "needs the console's token" in message
    clean_console(browser, allowed=("403",))
    browser.get(f"{console.url}/models/{console.model}")
    wait_for(browser, "#model-name")
    assert current_version(browser) == before
