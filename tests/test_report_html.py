"""`planner report`: the HTML page renders in a real headless Chromium, holds every tensor,
and shows a tooltip when the pointer is on an arena block."""

from __future__ import annotations

import shutil

import pytest

from planner.cli import main
from planner.html_report import per_op, per_tensor, render
from planner.plan import read_plan

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver && pip install selenium"


def test_the_page_is_self_contained_and_holds_every_tensor_and_op(tmp_path):
    out = tmp_path / "p.json"
    assert main(["plan", "--solver", "greedy", "-o", str(out), "--quiet"]) == 0
    plan = read_plan(out)
    page = render(plan)
    assert "http://" not in page and "https://" not in page and "<script src" not in page  # no network
    assert len(per_tensor(plan)) == len(plan.graph.tensors) and len(per_op(plan)) == len(plan.graph.ops)
    assert page.count('class="block"') > 0 and "TensorFlow Lite Micro" in page
    html = tmp_path / "p.html"
    assert main(["report", str(out), "-o", str(html)]) == 0 and html.read_text() == page


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason=f"needs Chromium and ChromeDriver: {INSTALL}")
def test_the_page_renders_in_chromium_and_hovering_a_block_shows_its_tooltip(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"needs selenium: {INSTALL}")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    out, html = tmp_path / "p.json", tmp_path / "p.html"
    assert main(["plan", "--solver", "greedy", "-o", str(out), "--quiet"]) == 0
    assert main(["report", str(out), "-o", str(html)]) == 0
    plan = read_plan(out)
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        d.get(html.as_uri())
        assert len(d.find_elements(By.CSS_SELECTOR, "#tensors tbody tr")) == len(plan.graph.tensors)
        assert d.find_element(By.ID, "timeline").is_displayed() and d.find_element(By.ID, "arena").is_displayed()
        rects = d.find_elements(By.CSS_SELECTOR, "rect.block")
        big = max(rects, key=lambda r: float(r.get_attribute("width")) * float(r.get_attribute("height")))
        tip = d.find_element(By.ID, "tip")
        assert not tip.is_displayed()
        ActionChains(d).move_to_element(big).perform()
        assert tip.is_displayed() and "bytes" in tip.text and "consumers" in tip.text
        assert any(t in tip.text for t in plan.graph.tensors)
    finally:
        d.quit()
