"""The console in a real browser (Debian's Chromium, driven by Playwright): each page
checked against the API's own answers, a filter, the rejects clicked through, and a
retry that works with the admin token and is refused without it.

One stack for the module (the pages mostly read); screenshots of each page go to
tests/artifacts/ (docs/console-*.png are copies of them).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from chute.rabbitmq.broker import CONTROL, Broker
from chute.rabbitmq.messages import RetryRequested
from conftest import SAMPLE
from harness import AMQP, REPO, Environment, Services, free_port, running_stack, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
ADMIN = "console-admin-token-for-tests"
HOSTILE = "<img src=x onerror=alert(1)>.csv"  # a name that must stay text
REASONS = {"age": 70, "range": 40, "name": 10}


def rejects_file() -> bytes:
    """10 good rows, then 70 ages that are no number, 40 out of range, 10 empty names."""
    lines = ["fullname,age,location"]
    lines += [f"Good Person{i},{20 + i},Oslo" for i in range(10)]
    lines += [f"Bad Age{i},abc{i},Lima" for i in range(REASONS["age"])]
    lines += [f"Old Person{i},{200 + i},Rome" for i in range(REASONS["range"])]
    lines += [f" ,{30 + i},Paris" for i in range(REASONS["name"])]
    return ("\n".join(lines) + "\n").encode()


def people_file(rows: int) -> bytes:
    return ("fullname,age,location\n" + "".join(
        f"Person{i} Many,{i % 90},{('Oslo', 'Lima', 'Rome')[i % 3]}\n" for i in range(rows))
    ).encode()


FILES = {
    "sample.csv": SAMPLE,
    "many people.csv": people_file(70),
    "rejects.csv": rejects_file(),
    "headless.csv": b"name,years\nAda,36\n",
    HOSTILE: b"fullname,age,location\nEve Hacker,30,Nowhere\n",
    "orders/orders-2024-06-01.csv": (REPO / "examples/orders/orders-2024-06-01.csv").read_bytes(),
    "readings/readings-2024-06-01.csv":
        (REPO / "examples/readings/readings-2024-06-01.csv").read_bytes(),
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
           ) -> Iterator[tuple[Environment, Services]]:
    """Three datasets (people, orders, readings) with the files above, all final."""
    root = tmp_path_factory.mktemp("console")
    with running_stack(root, request, CHUTE_DATASETS=str(REPO / "examples" / "chute.toml"),
                       CHUTE_ADMIN_TOKEN=ADMIN) as (environment, services):
        for name, content in FILES.items():
            environment.drop(name, content)
        for name in FILES:
            environment.wait_final(name, 60)
        yield environment, services


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  color_scheme="light", accept_downloads=True)
    opened = context.new_page()
    yield opened
    context.close()


def api(environment: Environment, path: str, **params: Any) -> Any:
    answer = environment.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def file_item(environment: Environment, name: str) -> dict[str, Any]:
    items = api(environment, "/files", name=name)["items"]
    assert items, name
    return items[0]


def card(page: Page, dataset: str) -> Any:
    return page.locator("article.card").filter(
        has=page.locator("h3 a", has_text=re.compile(f"^{re.escape(dataset)}$")))


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    assert (ARTIFACTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overview_shows_every_dataset_as_the_api_counts_it(
        loaded: tuple[Environment, Services], page: Page) -> None:
    environment, _ = loaded
    page.goto(environment.api + "/")

    expect(page).to_have_title("Overview · chute")
    expect(page.locator("#problems")).to_contain_text("Every worker that reports is working")
    datasets = api(environment, "/datasets")["items"]
    assert {d["name"] for d in datasets} == {"people", "orders", "readings"}
    for dataset in datasets:
        name = dataset["name"]
        files = api(environment, "/files", dataset=name, limit=1000)["items"]
        shown = card(page, name)
        expect(shown.locator("[data-figure=rows]")).to_have_text(f"{dataset['rows']:,}")
        expect(shown.locator("[data-figure=files-today]")).to_have_text(f"{len(files):,}")
        read = sum((f["rows_loaded"] or 0) + (f["rows_rejected"] or 0) for f in files)
        rejected = sum(f["rows_rejected"] or 0 for f in files)
        share = f"{rejected / read:.1%}" if read else "–"
        expect(shown.locator("[data-figure=rejected-share]")).to_have_text(share)
        expect(shown.locator("p.last a")).to_have_text(files[0]["name"])
        expect(shown.locator("p.last .state")).to_have_text(files[0]["state"])
        expect(shown.locator("[data-figure=waiting]")).to_contain_text(
            "received 0 · transforming 0 · loading 0")
        expect(shown.locator("[data-figure=declaration]")).to_have_text(
            "Declaration: matches")
        loaded_rows = sum(f["rows_loaded"] or 0 for f in files)
        expect(shown.locator("figcaption")).to_have_text(
            f"{loaded_rows:,} rows in the last hour (per minute)")
    # headless.csv was quarantined today: people needs a look, and the card says why.
    expect(card(page, "people").locator(".health")).to_have_text("needs a look")
    expect(card(page, "people").locator(".concerns")).to_have_text("1 quarantined today")
    expect(card(page, "orders").locator(".health")).to_have_text("healthy")

    # The hostile name is text: shown as typed, and no image element came of it.
    expect(page.locator("#recent")).to_contain_text(HOSTILE)
    assert page.locator("img").count() == 0
    screenshot(page, "console-overview.png")

    page.emulate_media(color_scheme="dark")
    screenshot(page, "console-overview-dark.png")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "console-overview-phone.png")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide at phone width"


def test_overview_follows_new_files_without_reloading(
        loaded: tuple[Environment, Services], page: Page) -> None:
    environment, _ = loaded
    page.goto(environment.api + "/")
    before = len(api(environment, "/files", dataset="orders", limit=1000)["items"])
    expect(card(page, "orders").locator("[data-figure=files-today]")).to_have_text(
        f"{before:,}")
    page.evaluate("window.notReloaded = true")

    environment.drop("orders/orders-2024-06-02.csv", b"order_id,Customer Name,amount,"
                     b"ordered_at,status,paid\n9001,Live Shop,1.50,02/06/2024 10:00,new,no\n")
    environment.wait_final("orders/orders-2024-06-02.csv")

    expect(card(page, "orders").locator("[data-figure=files-today]")).to_have_text(
        f"{before + 1:,}", timeout=20_000)
    expect(card(page, "orders").locator("p.last a")).to_have_text(
        "orders/orders-2024-06-02.csv")
    assert page.evaluate("window.notReloaded") is True


def test_file_page_shows_the_timeline_and_rejects_grouped_by_reason(
        loaded: tuple[Environment, Services], page: Page) -> None:
    environment, _ = loaded
    item = file_item(environment, "rejects.csv")
    page.goto(environment.api + "/")
    page.locator("#recent a", has_text=re.compile("^rejects.csv$")).click()
    expect(page).to_have_url(f"{environment.api}/console/files/{item['file_id']}")

    expect(page.locator("h1")).to_have_text("rejects.csv")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text(item["sha256"])
    expect(facts).to_contain_text("archive/")  # where a loaded file is now
    expect(facts.locator("[data-figure=rows_total]")).to_have_text(f"{item['rows_total']:,}")
    expect(facts.locator("[data-figure=rows_loaded]")).to_have_text(f"{item['rows_loaded']:,}")
    expect(facts.locator("[data-figure=rows_rejected]")).to_have_text("120")
    timeline = page.locator("ol.timeline")
    expect(timeline).to_contain_text("received")
    expect(timeline).to_contain_text("claimed by a transformer")
    expect(timeline).to_contain_text("batch 0 loaded: 10 rows, 120 rejected")
    expect(timeline.locator("li").last).to_contain_text("loaded")

    # Groups: every reject of the API counted under its reason, two examples each.
    rejects = _all_rejects(environment, item["file_id"])
    assert len(rejects) == 120
    groups = page.locator("table.groups tbody tr")
    expect(groups).to_have_count(3)
    counts = [int(groups.nth(i).locator("td.n").inner_text()) for i in range(3)]
    assert counts == sorted(REASONS.values(), reverse=True)
    by_line = {r["line"]: r for r in rejects}
    for i in range(3):
        examples = groups.nth(i).locator(".example")
        expect(examples).to_have_count(2)
        for j in range(2):
            line, raw = examples.nth(j).inner_text().split(": ", 1)
            assert by_line[int(line)]["raw"] == raw
    first = groups.nth(0).locator(".example").nth(0).inner_text()
    assert first == f"12: {by_line[12]['raw']}"  # the first bad age is line 12

    # Every reject, page by page, as the API pages them.
    page.locator("#every-reject summary").click()
    seen = [int(c) for c in page.locator("table.rejects td.n").all_inner_texts()]
    while page.locator("a[rel=next]", has_text="Next rejects").count():
        page.locator("a[rel=next]", has_text="Next rejects").click()
        seen += [int(c) for c in page.locator("table.rejects td.n").all_inner_texts()]
    assert seen == [r["line"] for r in rejects]

    with page.expect_download() as download:
        page.locator("a", has_text="Download all 120 rejects as CSV").click()
    text = open(download.value.path(), encoding="utf-8", newline="").read()
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["line", "reason", "raw"]
    assert [(int(line), reason, raw) for line, reason, raw in table[1:]] == [
        (r["line"], r["reason"], r["raw"]) for r in rejects]

    page.goto(environment.api + f"/console/files/{item['file_id']}")
    screenshot(page, "console-file.png")


def test_dataset_page_shows_the_declaration_and_filters_rows_as_the_api_does(
        loaded: tuple[Environment, Services], page: Page) -> None:
    environment, _ = loaded
    page.goto(environment.api + "/")
    card(page, "readings").locator("h3 a").click()
    expect(page.locator("h1")).to_have_text("readings")

    declaration = page.locator("table.declaration tbody tr")
    expect(declaration).to_have_count(6)
    cells = [declaration.nth(i).locator("td").all_inner_texts() for i in range(6)]
    assert cells[0] == ["sensor", "uuid", "required; nulls NA", "yes", ""]
    assert cells[3] == ["temperature", "double", "min -90.0; max 60.0; nulls NA", "", ""]
    assert cells[5] == ["site", "text", "pattern [A-Z]{3}-[0-9]{2}; nulls NA", "", ""]
    # Inputs typed as the OpenAPI document types the parameters.
    assert page.locator("input[name=taken_on]").get_attribute("type") == "date"
    assert page.locator("input[name=min_humidity]").get_attribute("type") == "number"
    assert page.locator("input[name=min_temperature]").get_attribute("step") == "any"

    everything = api(environment, "/datasets/readings/rows", limit=1000)["items"]
    day = everything[0]["taken_on"]
    page.locator("input[name=taken_on]").fill(day)
    page.locator("button", has_text="Filter").click()
    expected = api(environment, "/datasets/readings/rows", taken_on=day, limit=25)["items"]
    assert expected
    _expect_rows(page, [[str(r[c]) if r[c] is not None else "" for c in
                         ("sensor", "taken_on", "taken_at", "temperature", "humidity", "site")]
                        for r in expected])
    screenshot(page, "console-dataset.png")

    # people: a number filter, and the API's cursor from page to page.
    page.goto(environment.api + "/console/datasets/people")
    assert page.locator("input[name=min_age]").get_attribute("type") == "number"
    page.locator("input[name=min_age]").fill("40")
    page.locator("button", has_text="Filter").click()
    shown: list[list[str]] = []
    while True:
        shown += _rows(page)
        following = page.locator("#next-rows")
        if not following.count():
            break
        following.click()
    expected = _pages(environment, "/datasets/people/rows", min_age=40)
    assert shown == [[r["first_name"], r["last_name"] or "", str(r["age"]), r["location"]]
                     for r in expected]
    assert len(expected) > 25  # more than one page was browsed

    # A value the API refuses is said beside the form, not a broken page.
    page.goto(environment.api + "/console/datasets/people?min_age=abc")
    refusal = environment.get("/datasets/people/rows", params={"min_age": "abc"})
    assert refusal.status_code == 400
    expect(page.locator(".problem")).to_have_text(refusal.json()["error"]["message"])

    # Its files, newest first, as /files lists them.
    page.goto(environment.api + "/console/datasets/people")
    names = page.locator("#files ~ .scroll tbody tr td:first-child a").all_inner_texts()
    assert names == [f["name"] for f in api(environment, "/files", dataset="people")["items"]]


def test_keyboard_reaches_the_content_and_every_link(
        loaded: tuple[Environment, Services], page: Page) -> None:
    environment, _ = loaded
    page.goto(environment.api + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.closest('main') !== null")
    assert focused
    # The theme button works from the keyboard too, and the choice is kept.
    page.locator("#theme").focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"


def test_retry_needs_the_admin_token_and_sends_the_file_round_again(
        loaded: tuple[Environment, Services], page: Page) -> None:
    environment, services = loaded
    item = file_item(environment, "headless.csv")
    assert item["state"] == "quarantined"
    url = f"{environment.api}/console/files/{item['file_id']}"
    attempts = _attempts(environment, item["file_id"])

    # Not signed in: no button, and a POST (as a script would send it) is refused.
    page.goto(url)
    expect(page.locator("#retry")).to_have_count(0)
    expect(page.locator(".actions")).to_contain_text("Sign in as admin")
    refused = page.request.post(url + "/retry", form={"csrf": "guess"})
    assert refused.status == 403
    assert "sign in with the admin token first" in refused.text()
    # A wrong admin token signs nobody in.
    page.goto(environment.api + f"/console/admin?next=/console/files/{item['file_id']}")
    page.locator("#token").fill("not-the-token")
    page.locator("button", has_text="Sign in").click()
    expect(page.locator(".problem")).to_have_text("that is not the admin token")
    assert _attempts(environment, item["file_id"]) == attempts
    assert file_item(environment, "headless.csv")["state"] == "quarantined"

    # Signed in with the admin token: the button is there and works.
    page.locator("#token").fill(ADMIN)
    page.locator("button", has_text="Sign in").click()
    expect(page).to_have_url(url)
    # Signed in, a request from another site, or with another session's form token, fails.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = requests.post(url + "/retry", data={"csrf": "0" * 64}, cookies=cookies,
                           timeout=10)
    assert forged.status_code == 403 and "does not match this session" in forged.text
    elsewhere = requests.post(url + "/retry", data={"csrf": "x"}, cookies=cookies,
                              headers={"Origin": "http://evil.example"}, timeout=10)
    assert elsewhere.status_code == 403 and "another origin" in elsewhere.text
    assert _attempts(environment, item["file_id"]) == attempts

    page.locator("#retry").click()
    expect(page.locator("p.notice[role=status]")).to_contain_text("Retry requested")
    wait_until(lambda: _attempts(environment, item["file_id"]) == attempts + 1, 30,
               what="the retried file to go round again")
    again = environment.wait_final("headless.csv")
    assert again["file_id"] == item["file_id"] and again["state"] == "quarantined"
    assert "no header" in again["error"]
    wait_until(lambda: "console action done" in services.logs(), 10,
               what="the watcher's log line")
    logs = services.logs()
    assert '"action": "retry"' in logs and item["file_id"] in logs

    # A loaded file offers no retry, and a POST for it is refused with the reason.
    loaded_file = file_item(environment, "sample.csv")
    page.goto(f"{environment.api}/console/files/{loaded_file['file_id']}")
    expect(page.locator("#retry")).to_have_count(0)


def test_the_watcher_drops_bad_control_requests_and_goes_on(
        loaded: tuple[Environment, Services]) -> None:
    environment, services = loaded
    headless = file_item(environment, "headless.csv")
    sample = file_item(environment, "sample.csv")
    attempts = _attempts(environment, headless["file_id"])
    broker = Broker(AMQP, environment.namespace)
    try:
        broker.publish(CONTROL, {"kind": "control.retry", "v": 4}, b"not json")
        broker.publish(CONTROL, {"kind": "something.else", "v": 4}, b"{}")
        broker.publish(CONTROL, *RetryRequested(sample["file_id"], "2026-01-01").encode())
        broker.publish(CONTROL, *RetryRequested(headless["file_id"], "2026-01-01").encode())
    finally:
        broker.close()

    wait_until(lambda: _attempts(environment, headless["file_id"]) == attempts + 1, 30,
               what="the good request to be carried out after the bad ones")
    logs = services.logs()
    assert logs.count("console action dropped: not a request") >= 2
    assert "sample.csv is loaded: only quarantined or failed files can be retried" in logs
    assert file_item(environment, "sample.csv")["state"] == "loaded"
    environment.wait_final("headless.csv")


def test_replay_and_rebuild_run_as_chute_commands_started_by_the_watcher(
        loaded: tuple[Environment, Services], page: Page) -> None:
    environment, services = loaded
    item = file_item(environment, "rejects.csv")
    assert item["state"] == "loaded" and item["rows_rejected"] == sum(REASONS.values())
    url = f"{environment.api}/console/files/{item['file_id']}"

    # Not signed in: no button, and a POST is refused; nothing is started.
    page.goto(url)
    expect(page.locator("#replay")).to_have_count(0)
    expect(page.locator(".actions")).to_contain_text("to replay its rejected rows")
    assert page.request.post(url + "/replay", form={"csrf": "guess"}).status == 403
    readings = f"{environment.api}/console/datasets/readings"
    assert page.request.post(readings + "/rebuild", form={"csrf": "guess"}).status == 403
    assert "console action started" not in services.logs()

    page.goto(environment.api + f"/console/admin?next=/console/files/{item['file_id']}")
    page.locator("#token").fill(ADMIN)
    page.locator("button", has_text="Sign in").click()
    expect(page).to_have_url(url)
    page.locator("#replay").click()
    expect(page.locator("p.notice[role=status]")).to_contain_text("Replay requested")
    # The same declaration: every rejected row is rejected again, and says so.
    wait_until(lambda: "still rejected" in services.logs(), 60,
               what="chute replay to finish and the watcher to log it")
    assert f"0 rows now load, {sum(REASONS.values())} still rejected" in services.logs()
    again = file_item(environment, "rejects.csv")
    assert (again["rows_loaded"], again["rows_rejected"]) == (
        item["rows_loaded"], item["rows_rejected"])

    rows_before = environment.sql("SELECT count(*) FROM readings")[0][0]
    page.goto(readings)
    page.locator("#rebuild").click()
    expect(page.locator("p.notice[role=status]")).to_contain_text("Rebuild requested")
    wait_until(lambda: "dataset readings: rebuilt from" in services.logs(), 120,
               what="chute rebuild to swap the new table in")
    assert environment.sql("SELECT count(*) FROM readings")[0][0] == rows_before
    assert environment.sql("SELECT to_regclass('readings_previous') IS NOT NULL")[0][0]
    logs = services.logs()
    assert '"action": "rebuild"' in logs and '"exit_code": 0' in logs
    # A loaded file without rejects has nothing to replay, and a POST says so.
    sample = file_item(environment, "many people.csv")
    page.goto(f"{environment.api}/console/files/{sample['file_id']}")
    expect(page.locator("#replay")).to_have_count(0)
    page.goto(readings)  # the session's form token, from a page that has a form
    csrf = page.locator("input[name=csrf]").first.input_value()
    refused = page.request.post(
        f"{environment.api}/console/files/{sample['file_id']}/replay", form={"csrf": csrf},
        headers={"Origin": environment.api})
    assert refused.status == 409
    assert "many people.csv is loaded with 0 rejected rows" in refused.text()


def test_console_without_an_admin_token_has_no_actions(
        loaded: tuple[Environment, Services], browser: Browser) -> None:
    environment, services = loaded
    port = free_port()
    services.start("api", CHUTE_API_PORT=str(port), CHUTE_ADMIN_TOKEN="")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(base + "/health"), 30, what="the second API")
    item = file_item(environment, "headless.csv")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{base}/console/files/{item['file_id']}")
        expect(page.locator("h1")).to_have_text("headless.csv")
        expect(page.locator(".actions")).to_have_count(0)
        expect(page.locator("header")).not_to_contain_text("Admin")
        # Off, the actions do not exist at all: nothing to post to, nothing documented.
        answer = page.request.post(f"{base}/console/files/{item['file_id']}/retry")
        assert answer.status == 404
        assert page.request.get(f"{base}/console/admin").status == 404
        document = requests.get(base + "/openapi.json", timeout=10).json()
        assert "/console/files/{file_id}/retry" not in document["paths"]
        assert "/console/datasets/{name}/rebuild" not in document["paths"]
        assert page.request.post(f"{base}/console/datasets/people/rebuild").status == 404
    finally:
        context.close()


def test_console_is_under_the_api_token(loaded: tuple[Environment, Services],
                                        browser: Browser) -> None:
    environment, services = loaded
    port = free_port()
    services.start("api", CHUTE_API_PORT=str(port), CHUTE_API_TOKEN="read-token")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(base + "/health"), 30, what="the guarded API")
    assert requests.get(base + "/", timeout=10).status_code == 401
    assert requests.get(base + "/console/static/console.js", timeout=10).status_code == 401
    context = browser.new_context(extra_http_headers={"Authorization": "Bearer read-token"})
    try:
        page = context.new_page()
        page.goto(base + "/")
        expect(card(page, "people")).to_have_count(1)
    finally:
        context.close()


def test_a_file_being_loaded_shows_its_progress(environment: Environment, services: Services,
                                               browser: Browser) -> None:
    services.start("api")
    services.start("watcher")
    services.start("transformer")
    services.wait_for_api()
    environment.drop("big.csv", b"fullname,age,location\n" + b"A B,1,C\n" * 5000)
    wait_until(lambda: (environment.file_state("big.csv") or {}).get("state") == "processing",
               what="big.csv to be processing (no loader runs yet)")
    item = file_item(environment, "big.csv")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(environment.api + "/")
        row = page.locator("#recent tr", has_text="big.csv")
        expect(row.locator(".state")).to_have_text("processing")
        expect(row.locator("progress")).to_have_count(1)
        expect(card(page, "people").locator("[data-figure=waiting]")).to_contain_text(
            "received 0 · transforming 1 · loading 0")  # no batch of it loaded yet
        page.goto(f"{environment.api}/console/files/{item['file_id']}")
        expect(page.locator("#summary progress")).to_have_count(1)
        expect(page.locator("#summary")).to_contain_text("0 rows so far")
    finally:
        context.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def _attempts(environment: Environment, file_id: str) -> int:
    return environment.sql("SELECT attempts FROM chute.files WHERE file_id = %s",
                           (file_id,))[0][0]


def _all_rejects(environment: Environment, file_id: str) -> list[dict[str, Any]]:
    return _pages(environment, f"/files/{file_id}/rejects")


def _pages(environment: Environment, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api(environment, path, **params, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _rows(page: Page) -> list[list[str]]:
    return [row.locator("td").all_inner_texts()
            for row in page.locator("table.rows tbody tr").all()]


def _expect_rows(page: Page, expected: list[list[str]]) -> None:
    assert _rows(page) == expected
