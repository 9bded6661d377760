"""Regenerate the README's screenshots of the review pages from the demo's data (`make screenshots`).

Runs `linkage demo` in a temporary folder, serves the coordinator's and the police node's folders
on loopback, and photographs the main pages in Debian's headless chromium (`make browser`) at
1280×800, plus the steward's review page in a 400 px wide window. Writes PNGs to docs/screenshots/.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from linkage import cli
from services.review import ServeConfig, run_server

OUT = Path(__file__).resolve().parent / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def shoot(
    driver: webdriver.Chrome, url: str, name: str, *, width: int = 1280, height: int = 800, wait_for: str = "main h1"
) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    )
    driver.get(url)
    WebDriverWait(driver, 20).until(seen.presence_of_element_located((By.CSS_SELECTOR, wait_for)))
    path = OUT / f"{name}.png"
    path.write_bytes(driver.get_screenshot_as_png())
    print(f"wrote {path.relative_to(OUT.parent.parent)} ({width}x{height})")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="linkage-screenshots-") as temp:
        root = Path(temp)
        if cli.main(["demo", "--workdir", str(root), "--people", "2000"]) != 0:
            return 1
        job = next((root / "coordinator" / "jobs").iterdir()).name
        driver = browser()
        try:
            with run_server(ServeConfig(data_dir=root / "coordinator", listen="127.0.0.1:0", local_actor="local/auditor")) as (
                _,
                port,
            ):
                base = f"http://127.0.0.1:{port}"
                shoot(driver, f"{base}/log", "timeline")
                shoot(driver, f"{base}/jobs/{job}", "job")
                driver.execute_script("document.getElementById('hist-heading').scrollIntoView()")
                (OUT / "job-histogram.png").write_bytes(driver.get_screenshot_as_png())
                print("wrote docs/screenshots/job-histogram.png (1280x800)")
            with run_server(ServeConfig(data_dir=root / "police", listen="127.0.0.1:0", local_actor="local/steward")) as (
                _,
                port,
            ):
                base = f"http://127.0.0.1:{port}"
                shoot(driver, f"{base}/results/{job}/review/1", "steward-review")
                shoot(driver, f"{base}/results/{job}/review/1", "steward-review-narrow", width=400, height=800)
                shoot(driver, f"{base}/results", "steward-results")
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
