"""The review pages (`linkage review serve`), driven in a real headless Chromium.

Data: one `linkage demo` run (generated agencies, seed 2026) per test session; tests that write
(a tampered log, a steward's decisions) work on copies of its folders. The browser is Debian's
chromium with its chromium-driver (`make browser` installs both); Selenium is pointed at them and
never downloads a browser. Waits are explicit (an element, a URL), never sleeps.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import re
import shutil
import socket
import sqlite3
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np
import polars as pl
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait

from linkage import cli
from linkage.errors import AuditError, InputError, ServerError
from linkage.matching._labels import read_labels, threshold_from_labels, threshold_from_labels_file
from linkage.testing._demo import AGENCIES
from linkage.trust._audit import AuditLog
from services.review import ServeConfig, create_server, run_server

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WAIT_S = 30
DEMO_PEOPLE = 1500


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole demo task force after one job: coordinator/, police/, child_welfare/, victim_services/."""
    root = tmp_path_factory.mktemp("review-demo")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["demo", "--workdir", str(root), "--people", str(DEMO_PEOPLE)]) == 0
    return root


@pytest.fixture(scope="session")
def job_id(demo: Path) -> str:
    (job,) = [p.name for p in (demo / "coordinator" / "jobs").iterdir()]
    return job


@pytest.fixture
def demo_copy(demo: Path, tmp_path: Path) -> Path:
    """A copy of the demo, for tests that change a folder."""
    return Path(shutil.copytree(demo, tmp_path / "demo"))


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert path.exists(), f"{path} is missing: run `make browser` (Debian's chromium and chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def served(folder: Path, **options: object) -> Iterator[str]:
    with run_server(ServeConfig(data_dir=folder, listen="127.0.0.1:0", local_actor="local/tester", **options)) as (_, port):  # type: ignore[arg-type]
        yield f"http://127.0.0.1:{port}"


def wait(driver: WebDriver):
    return WebDriverWait(driver, WAIT_S)


def log_rows(folder: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(folder / "audit.db")
    try:
        return conn.execute("SELECT seq, action FROM entries ORDER BY seq").fetchall()
    finally:
        conn.close()


# -- auditors --------------------------------------------------------------------------------------
def test_a_tampered_entry_is_shown_failed_in_red(demo_copy: Path, browser: WebDriver) -> None:
    folder = demo_copy / "coordinator"
    conn = sqlite3.connect(folder / "audit.db")
    seq, details = conn.execute(
        "SELECT seq, details FROM entries WHERE action = 'results delivered' ORDER BY seq LIMIT 1"
    ).fetchone()
    edited = {**json.loads(details), "rows": 1}  # an insider shrinks what an agency received
    conn.execute("DROP TRIGGER entries_append_only_update")
    conn.execute("UPDATE entries SET details = ? WHERE seq = ?", (json.dumps(edited, sort_keys=True, separators=(",", ":")), seq))
    conn.commit()
    conn.close()
    before = len(log_rows(folder))

    with served(folder) as base:
        browser.get(f"{base}/log")
        failed = wait(browser).until(seen.presence_of_element_located((By.CSS_SELECTOR, "li.entry[data-state=failed]")))
        assert failed.get_attribute("data-seq") == str(seq)
        assert "contents do not match its hash (edited)" in failed.text
        assert len(browser.find_elements(By.CSS_SELECTOR, "li.entry[data-state=failed]")) == 1
        assert failed.value_of_css_property("background-color") == "rgba(253, 236, 234, 1)"  # the red tint
        badge = failed.find_element(By.CSS_SELECTOR, ".state-failed")
        assert badge.value_of_css_property("background-color") == "rgba(179, 38, 30, 1)"
        earlier = browser.find_elements(By.CSS_SELECTOR, "li.entry[data-state=verified]")
        later = browser.find_elements(By.CSS_SELECTOR, "li.entry[data-state=unverified]")
        assert {int(e.get_attribute("data-seq") or "") for e in earlier} == set(range(1, seq))
        assert later and all(int(e.get_attribute("data-seq") or "") > seq for e in later)
        assert "Log does not verify" in browser.find_element(By.ID, "verify-title").text
        assert browser.find_element(By.CSS_SELECTOR, "code.anchor").text.startswith(f"{seq - 1}:")

    after = log_rows(folder)
    assert len(after) == before + 1 and after[-1][1] == "audit log read"  # the read itself is logged


def test_the_auditor_filters_by_agency_and_job_and_opens_the_job(demo_copy: Path, job_id: str, browser: WebDriver) -> None:
    folder = demo_copy / "coordinator"
    with served(folder) as base:
        browser.get(f"{base}/log")
        wait(browser).until(seen.presence_of_element_located((By.CSS_SELECTOR, "li.entry")))
        everything = len(browser.find_elements(By.CSS_SELECTOR, "li.entry"))

        Select(browser.find_element(By.NAME, "agency")).select_by_value("victim_services")
        browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
        wait(browser).until(seen.url_contains("agency=victim_services"))
        shown = browser.find_elements(By.CSS_SELECTOR, "li.entry")
        assert 0 < len(shown) < everything
        assert all("victim_services" in e.text for e in shown)
        assert {e.get_attribute("data-action") for e in shown} >= {"encodings received", "results delivered"}

        Select(browser.find_element(By.NAME, "agency")).select_by_value("")
        Select(browser.find_element(By.NAME, "job")).select_by_value(job_id)
        browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
        wait(browser).until(seen.url_contains(f"job={job_id}"))
        shown = browser.find_elements(By.CSS_SELECTOR, "li.entry")
        assert shown and all(e.get_attribute("data-job") == job_id for e in shown)
        assert "key card published" not in {e.get_attribute("data-action") for e in shown}

        browser.find_element(By.LINK_TEXT, "Jobs").click()
        wait(browser).until(seen.element_to_be_clickable((By.LINK_TEXT, job_id))).click()
        svg = wait(browser).until(seen.visibility_of_element_located((By.CSS_SELECTOR, "svg#histogram")))
        linked = next(e for e in AuditLog(folder / "audit.db", None).entries(job=job_id) if e.action == "job linked").details
        lines = {line.get_attribute("data-threshold"): float(line.get_attribute("data-value"))
                 for line in svg.find_elements(By.CSS_SELECTOR, "line.threshold")}  # fmt: skip
        assert lines == {"match": linked["threshold"], "review": linked["review_threshold"]}
        bars = svg.find_elements(By.CSS_SELECTOR, "rect.bar")
        assert len(bars) == len(linked["score_histogram"]) == 20
        counted = [int(re.findall(r": ([\d,]+) pairs", b.get_attribute("textContent") or "")[0].replace(",", "")) for b in bars]
        assert counted == linked["score_histogram"] and sum(counted) == linked["candidates"]
        steps = {e.get_attribute("data-action") for e in browser.find_elements(By.CSS_SELECTOR, "li.entry")}
        assert steps >= {"job started", "encodings received", "job linked", "results delivered", "job finished"}


def test_auditor_pages_change_nothing_but_log_their_reads(demo_copy: Path, job_id: str) -> None:
    folder = demo_copy / "coordinator"
    files = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != "audit.db"}
    before = log_rows(folder)
    with served(folder) as base:
        for path in ("/log", "/log?agency=police&reads=1", f"/jobs/{job_id}", "/jobs"):
            assert fetch(base + path)[0] == 200
        status, _ = fetch(f"{base}/results/{job_id}/review/1", data=b"decision=same")
        assert status in (404, 405)
    after = log_rows(folder)
    assert after[: len(before)] == before
    assert [action for _, action in after[len(before) :]] == ["audit log read"] * 3  # /jobs reads jobs.db only
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != "audit.db"} == files


# -- stewards --------------------------------------------------------------------------------------
def focus_button(driver: WebDriver, value: str) -> None:
    """Tab through the page until the decision button ``value`` has the focus."""
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)  # the page starts with no focus; the first Tab reaches the skip link
    for _ in range(40):
        focused = driver.switch_to.active_element
        if focused.tag_name == "button" and focused.get_attribute("value") == value:
            return
        focused.send_keys(Keys.TAB)
    raise AssertionError(f"Tab never reached the {value!r} button")


def test_a_steward_reviews_three_possible_matches_with_the_keyboard(
    demo_copy: Path, job_id: str, browser: WebDriver, tmp_path: Path
) -> None:
    folder = demo_copy / "police"
    possible = pl.read_csv(folder / "results" / f"{job_id}.csv", infer_schema=False).filter(pl.col("band") == "possible")
    possible = possible.with_columns(pl.col("similarity").cast(pl.Float64)).sort(
        ["similarity", "record_id"], descending=[True, False]
    )
    assert possible.height >= 3
    chosen = ["same", "different", "unsure"]
    with served(folder) as base:
        browser.get(f"{base}/results")
        wait(browser).until(seen.element_to_be_clickable((By.LINK_TEXT, "Review possible matches"))).send_keys(Keys.ENTER)
        for n, decision in enumerate(chosen, 1):
            wait(browser).until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), f"Review {n} of {possible.height}"))
            assert browser.find_element(By.CSS_SELECTOR, ".record-id").text == possible["record_id"][n - 1]
            # which fields agreed at which level in the pair, as delivered: levels, never a partner's value
            levels = [li.text for li in browser.find_elements(By.CSS_SELECTOR, ".agreement li")]
            delivered = possible["agreement"][n - 1]
            assert levels and levels == delivered.split("; ")[0].split(", ")
            focus_button(browser, decision)
            browser.switch_to.active_element.send_keys(Keys.ENTER)
        wait(browser).until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), f"Review 4 of {possible.height}"))
        focused_style = None
        focus_button(browser, "same")
        focused_style = browser.switch_to.active_element.value_of_css_property("outline-style")
        assert focused_style == "solid"  # the focus is visible
    out = tmp_path / "labels.csv"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["review", "export", "--dir", str(folder), "--out", str(out)]) == 0
    labels = pl.read_csv(out, infer_schema=False).sort("record_id")
    expected = pl.DataFrame({"record_id": possible["record_id"][:3], "decision": chosen}).sort("record_id")
    assert labels.select("record_id", "decision").equals(expected)
    assert set(labels["job"]) == {job_id}
    scores = dict(zip(possible["record_id"], possible["similarity"], strict=True))
    assert all(float(s) == scores[r] for r, s in labels.select("record_id", "score").iter_rows())
    suggested = threshold_from_labels_file(out)  # one same, one different: a threshold between their scores
    assert suggested is not None and suggested.misplaced == 0
    assert possible["similarity"][1] < suggested.threshold <= possible["similarity"][0]


def test_a_steward_sees_which_of_its_own_records_a_job_found_the_same_person(
    demo_copy: Path, job_id: str, browser: WebDriver
) -> None:
    # As a job that allows police several records per person delivers them (tests/test_duplicates.py):
    # same_person_as names the agency's own other records of the person, ';'-joined.
    folder = demo_copy / "police"
    path = folder / "results" / f"{job_id}.csv"
    results = pl.read_csv(path, infer_schema=False)
    first = (
        results.with_columns(pl.col("similarity").cast(pl.Float64))
        .filter(pl.col("band") == "possible")
        .sort(["similarity", "record_id"], descending=[True, False])["record_id"][0]
    )
    others = [r for r in results["record_id"] if r != first][:2]
    results.with_columns(
        same_person_as=pl.when(pl.col("record_id") == first).then(pl.lit(";".join(others))).otherwise(pl.lit(""))
    ).write_csv(path)
    with served(folder) as base:
        browser.get(f"{base}/results/{job_id}?band=possible")
        cells = {
            row.find_element(By.CSS_SELECTOR, "td").text: row.find_element(By.CSS_SELECTOR, ".same-person").text
            for row in browser.find_elements(By.CSS_SELECTOR, "table.results tbody tr")
        }
        assert cells[first] == ", ".join(others)
        assert {cell for record, cell in cells.items() if record != first} == {""}
        browser.get(f"{base}/results/{job_id}/review/1")
        assert browser.find_element(By.CSS_SELECTOR, ".record-id").text == first
        assert browser.find_element(By.CSS_SELECTOR, ".same-person").text.startswith(", ".join(others))
        browser.get(f"{base}/results/{job_id}/review/2")
        assert not browser.find_elements(By.CSS_SELECTOR, ".same-person")


def test_a_decision_without_the_form_token_is_refused(demo_copy: Path, job_id: str) -> None:
    folder = demo_copy / "police"
    with served(folder) as base:
        status, _ = fetch(f"{base}/results/{job_id}/review/1", data=b"decision=same&token=forged")
        assert status == 403
    assert not (folder / "reviews.db").exists()


# -- nothing of another agency ---------------------------------------------------------------------
class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def fetch(url: str, *, data: bytes | None = None, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=WAIT_S, context=context) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def crawl(base: str, limit: int = 400) -> dict[str, str]:
    """Every page reachable by links from the home page: path -> text (HTML or CSV)."""
    pages: dict[str, str] = {}
    queue = ["/"]
    while queue and len(pages) < limit:
        path = queue.pop()
        if path in pages:
            continue
        status, text = fetch(base + path)
        assert status == 200, path
        pages[path] = text
        parser = _Links()
        parser.feed(text)
        for href in parser.links:
            target = urlsplit(urljoin(base + path, href))
            if target.netloc == urlsplit(base).netloc and target.path.startswith("/") and not target.path.startswith("/static/"):
                queue.append(target.path + (f"?{target.query}" if target.query else ""))
    return pages


def input_values(folder: Path) -> set[str]:
    frame = pl.read_csv(folder / "input.csv", infer_schema=False)
    values = {v.strip() for column in frame.columns for v in frame.get_column(column).drop_nulls().to_list()}
    return {v for v in values if len(v) >= 3}


def appearing(values: set[str], text: str) -> list[str]:
    """The values that stand in the text as a whole: not inside a longer word, number, date or ZIP+4
    (a value of the agency's own, 30529-1234 or 0.30529, may hold another agency's 30529)."""
    return [v for v in values if v in text and re.search(rf"(?<![\w./-]){re.escape(v)}(?![\w/-]|\.\d)", text)]


def test_no_page_shows_an_identifier_of_another_agency(demo: Path, job_id: str) -> None:
    own = {agency: input_values(demo / agency) for agency in AGENCIES}
    for party in ("coordinator", *AGENCIES):
        others = set().union(*(values for agency, values in own.items() if agency != party))
        forbidden = others - own.get(party, set())
        with served(demo / party) as base:
            pages = crawl(base)
        assert f"/jobs/{job_id}" in pages
        if party != "coordinator":
            assert any("/review/" in p for p in pages) and f"/results/{job_id}/labels.csv" in pages
            # control: the agency's own record ids do appear, so the check below can see values
            own_ids = set(pl.read_csv(demo / party / "input.csv", infer_schema=False)["rec_id"])
            assert any(appearing(own_ids, html.unescape(text)) for text in pages.values())
        planted = sorted(forbidden)[0]  # control: a value of another agency placed in a page is caught
        assert planted in appearing(forbidden, html.unescape(f"<td>{html.escape(planted)}</td>"))
        for path, text in pages.items():
            leaked = appearing(forbidden, html.unescape(text))
            # a word of the party's own value (its address "12 King Street") is not another agency's "King"
            leaked = [v for v in leaked if not any(appearing({v}, mine) for mine in own.get(party, set()) if v in mine)]
            assert not leaked, f"{party} {path} shows {len(leaked)} value(s) of another agency"


# -- serving -------------------------------------------------------------------------------------
def test_anything_but_loopback_needs_tls(demo: Path, run_cli) -> None:
    with pytest.raises(ServerError, match="not a loopback address"):
        create_server(ServeConfig(data_dir=demo / "coordinator", listen="0.0.0.0:0"))
    result = run_cli("review", "serve", "--dir", demo / "coordinator", "--listen", "0.0.0.0:0")
    assert result.code == 1 and result.err.count("\n") == 1 and "--tls-cert" in result.err


def test_tls_admits_only_the_role_the_folder_calls_for(demo_copy: Path) -> None:
    pki = demo_copy / "pki"

    def over_tls(folder: str, cert: str) -> ServeConfig:
        return ServeConfig(
            data_dir=demo_copy / folder, listen="127.0.0.1:0", tls_cert=pki / f"{cert}.pem", tls_key=pki / f"{cert}.key",
            ca=pki / "ca.pem",
        )  # fmt: skip

    def client(name: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        if name:
            context.load_cert_chain(str(pki / f"{name}.pem"), str(pki / f"{name}.key"))
        return context

    with run_server(over_tls("coordinator", "coordinator")) as (_, port):
        url = f"https://127.0.0.1:{port}/log"
        assert fetch(url, context=client("auditor"))[0] == 200
        assert fetch(url, context=client("police"))[0] == 403
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            fetch(url, context=client(None))
    assert log_rows(demo_copy / "coordinator")[-1][1] == "audit log read"
    last = AuditLog(demo_copy / "coordinator" / "audit.db", None).entries()[-1]
    assert last.actor == "auditor/auditor"

    with run_server(over_tls("police", "police")) as (_, port):
        url = f"https://127.0.0.1:{port}/results"
        assert fetch(url, context=client("police"))[0] == 200
        assert fetch(url, context=client("child_welfare"))[0] == 403
        assert fetch(url, context=client("auditor"))[0] == 403


def test_a_folder_without_the_log_keepers_key_is_refused(demo_copy: Path) -> None:
    (demo_copy / "coordinator" / "keys" / "audit.key").unlink()
    with pytest.raises(AuditError, match="log every read of the audit log"):
        create_server(ServeConfig(data_dir=demo_copy / "coordinator", listen="127.0.0.1:0"))
    assert not (demo_copy / "coordinator" / "keys" / "audit.key").exists()


def test_the_port_in_use_is_one_line(demo: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match=f"cannot listen on 127.0.0.1:{port}"):
            create_server(ServeConfig(data_dir=demo / "coordinator", listen=f"127.0.0.1:{port}"))


# -- labels ----------------------------------------------------------------------------------------
def test_labels_suggest_the_threshold_that_misplaces_fewest() -> None:
    scores = np.array([0.60, 0.64, 0.66, 0.70, 0.72, 0.80, 0.90])
    same = np.array([False, False, True, False, True, True, True])
    suggested = threshold_from_labels(scores, same)
    assert suggested is not None and suggested.misplaced == 1 and suggested.same == 4 and suggested.different == 3
    assert 0.64 < suggested.threshold <= 0.66 or 0.70 < suggested.threshold <= 0.72
    separable = threshold_from_labels(np.array([0.61, 0.63, 0.75, 0.9]), np.array([False, False, True, True]))
    assert separable is not None and separable.threshold == pytest.approx(0.69) and separable.misplaced == 0
    assert threshold_from_labels(np.array([0.7, 0.8]), np.array([True, True])) is None


def test_a_labels_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "labels.csv"
    good.write_text(
        "job,record_id,reference,score,decision,decided\nj,a,r,0.7,same,t\nj,b,r,0.6,unsure,t\nj,c,r,0.5,different,t\n"
    )
    assert read_labels(good).height == 3
    suggested = threshold_from_labels_file(good)
    assert suggested is not None and suggested.same == 1 and suggested.different == 1 and 0.5 < suggested.threshold <= 0.7
    bad = tmp_path / "bad.csv"
    bad.write_text("score,decision\n0.7,maybe\n")
    with pytest.raises(InputError, match="row 1: decision must be one of"):
        read_labels(bad)
    bad.write_text("score,decision\n1.7,same\n")
    with pytest.raises(InputError, match="row 1: score"):
        read_labels(bad)


def test_link_uses_the_threshold_the_labels_suggest(demo: Path, tmp_path: Path, run_cli) -> None:
    encoded = []
    for agency in ("police", "child_welfare"):
        folder = demo / agency
        out = tmp_path / f"{agency}.parquet"
        result = run_cli("encode", "--schema", folder / "schema.toml", "--secret", folder / "secret.key", "--input", folder / "input.csv",
                         "--id-column", "rec_id", "--out", out)  # fmt: skip
        assert result.code == 0, result.err
        encoded.append(out)
    labels = tmp_path / "labels.csv"
    labels.write_text("job,record_id,reference,score,decision,decided\n"
                      "j,a,r,0.66,different,t\nj,b,r,0.67,different,t\nj,c,r,0.75,same,t\nj,d,r,0.9,same,t\n")  # fmt: skip
    result = run_cli("link", *encoded, "--out", tmp_path / "pairs.csv", "--labels", labels)
    assert result.code == 0, result.err
    assert "labels: match threshold 0.71 suggested by 4 reviewed pairs" in result.err
    assert "<- match threshold 0.71" in result.out
    given = run_cli("link", *encoded, "--out", tmp_path / "pairs.csv", "--labels", labels, "--threshold", "0.8")
    assert given.code == 0 and "<- match threshold 0.8" in given.out
