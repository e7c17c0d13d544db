"""``axial-monai report`` in a real browser: headless Debian chromium driven by Selenium (chromedriver).

Two runs are reported: the small demo training run (with its test evaluation and explanations) and a 2-fold
cross-validation of the tiny demo cohort. For each page: no console error, the sections and every image present and
decoded, the AUC shown equal to the one in metrics.json / summary.json, and a screenshot that is not blank. The
console and screenshot checks are first shown to fail on a page with an error and on a blank page.

Needs ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (``apt-get install chromium chromium-driver``; ``.ci/run``
installs them when missing). Selenium starts the driver given here; nothing is downloaded.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import TINY
from PIL import Image

from axial_monai.cli import main
from axial_monai.crossval import run_cross_validation
from axial_monai.data.datalist import load_split
from axial_monai.metrics import classification_scores

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,2200",
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless chromium with a fresh profile; browser console messages are recorded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).is_file(), f"{path} is missing: apt-get install chromium chromium-driver (see .ci/run)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def _open(driver, url: str) -> list[dict]:
    """Load ``url``, wait for it, and return the console errors it logged."""
    driver.get_log("browser")  # drop messages of earlier pages
    driver.get(url)
    assert driver.execute_script("return document.readyState") == "complete"
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _blank(png: bytes) -> bool:
    """True if a screenshot is (nearly) one colour."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    return pixels.std() < 5.0 or len(np.unique(pixels.reshape(-1, 3), axis=0)) < 20


def test_the_checks_can_fail(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('boom')</script></body></html>")
    errors = _open(browser, page.as_uri())
    assert errors and "boom" in errors[0]["message"]
    assert _blank(browser.get_screenshot_as_png())


@pytest.fixture(scope="module")
def crossval_run(tiny_cohort, tmp_path_factory):
    """2-fold cross-validation (2 epochs per fold) of all subjects of the tiny demo cohort."""
    items = [item for split in ("training", "validation", "test") for item in load_split(tiny_cohort, split)]
    table = pd.DataFrame(items).assign(session="ses-M000")[["subject", "session", "image", "label"]]
    out = tmp_path_factory.mktemp("cv2")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_cross_validation(table, out, k=2, seed=0, overrides={**TINY, "epochs": 2}, progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


def _report(run_dir: Path, out: Path) -> Path:
    assert main(["report", str(run_dir), "--out", str(out), "--n_resamples", "200"]) == 0
    return out


def _shown(browser, selector: str):
    cells = browser.find_elements("css selector", selector)
    assert len(cells) == 1, selector
    return cells[0].text, float(cells[0].get_attribute("data-value"))


def _check_page(browser, path: Path, sections: list[str]) -> None:
    assert not _open(browser, path.as_uri())
    for section in sections:
        assert browser.find_elements("id", section), f"section {section} missing"
    images = browser.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert images and all(complete and width > 0 for complete, width in images)
    assert "http" not in path.read_text().split("<body>")[1]  # self-contained: no external resource
    assert not _blank(browser.get_screenshot_as_png())


def test_training_run_report(browser, explained_demo, tmp_path):
    path = _report(explained_demo, tmp_path / "report.html")
    _check_page(browser, path, ["metrics-eval-test", "curves", "explanations", "attention", "maps"])
    metrics = json.loads((explained_demo / "eval-test" / "metrics.json").read_text())
    text, value = _shown(browser, "td[data-source='eval-test'][data-level='scan'][data-metric='auc']")
    assert value == pytest.approx(metrics["metrics"]["auc"], abs=1e-12)
    assert text.startswith(f"{metrics['metrics']['auc']:.3f} [")
    subject = metrics["confidence_intervals"]["subject"]["auc"]
    text, value = _shown(browser, "td[data-source='eval-test'][data-level='subject'][data-metric='auc']")
    assert text == f"{subject['estimate']:.3f} [{subject['low']:.3f}, {subject['high']:.3f}]"
    n_images = len(browser.find_elements("css selector", "img"))
    n_maps = len([p for p in (explained_demo / "explain" / "cohort").glob("*.nii.gz") if "explainable" not in p.name])
    assert n_images >= 3 + 1 + 1 + n_maps  # ROC + 2 confusion matrices, curves, attention profiles, one per cohort map


def test_crossval_report(browser, crossval_run, tmp_path):
    pooled = pd.read_csv(crossval_run / "predictions.csv")
    assert sorted(pooled["fold"].unique()) == [0, 1] and not pooled["image"].duplicated().any()
    summary = json.loads((crossval_run / "summary.json").read_text())
    scores = classification_scores(pooled[["prob_CN", "prob_AD"]].to_numpy(), pooled["label"].to_numpy())
    assert summary["pooled"]["scan"]["auc"]["estimate"] == pytest.approx(scores["auc"])
    assert summary["pooled"]["scan"]["n_scans"] == len(pooled) == 40
    path = _report(crossval_run, tmp_path / "cv.html")
    _check_page(browser, path, ["crossval", "curves"])
    for level in ("scan", "subject"):
        auc = summary["pooled"][level]["auc"]
        text, value = _shown(browser, f"td[data-source='pooled'][data-level='{level}'][data-metric='auc']")
        assert value == pytest.approx(auc["estimate"], abs=1e-12)
        assert text == f"{auc['estimate']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}]"
    for fold in (0, 1):
        metrics = json.loads((crossval_run / f"fold-{fold}" / "eval-test" / "metrics.json").read_text())["metrics"]
        text, value = _shown(browser, f"td[data-source='fold-{fold}'][data-metric='auc']")
        assert value == pytest.approx(metrics["auc"], abs=1e-12) and text == f"{metrics['auc']:.3f}"


def test_report_of_a_folder_without_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"axial-monai report: error: {tmp_path} has no evaluation")
