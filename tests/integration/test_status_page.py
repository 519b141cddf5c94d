"""The status page at GET /, as a person sees it in a real browser (headless Chromium)."""

from __future__ import annotations

import shutil
import subprocess

from conftest import SAMPLE
from harness import REPO, Environment, Services, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = REPO / "tests" / "artifacts" / "status-page.png"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium(environment: Environment, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "Chromium is missing: `make install` installs Debian's chromium"
    profile = environment.data_dir.parent / "chromium-profile"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, environment.api + "/"],
        capture_output=True, text=True, timeout=90, check=True,
    )


def test_status_page_shows_files_states_counts_and_rejects(environment: Environment,
                                                           stack: Services) -> None:
    environment.drop("sample.csv", SAMPLE)
    environment.drop("bad rows.csv", b"fullname,age,location\nAda Lovelace,36,London\n"
                                     b"Alan Turing,abc,Wilmslow\n")
    environment.drop("headless.csv", b"name,years\nAda,36\n")
    for name in ("sample.csv", "bad rows.csv", "headless.csv"):
        environment.wait_final(name)
    bad = environment.file_state("bad rows.csv")

    dom = chromium(environment, "--dump-dom").stdout

    assert "<title>chute: status</title>" in dom
    assert '<meta http-equiv="refresh" content="2">' in dom
    text = _visible_text(dom)
    assert "sample.csv people loaded" in text and "15 0 15" in text
    assert "bad rows.csv people loaded" in text and "1 1 2" in text
    assert "headless.csv" in text and "quarantined" in text
    assert "no header: expected columns fullname, age, location" in text
    assert f'href="/files/{bad["file_id"]}/rejects"' in dom

    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    chromium(environment, f"--screenshot={SCREENSHOT}", "--window-size=1280,520")
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_page_shows_a_progress_bar_while_a_file_loads(environment: Environment,
                                                            services: Services) -> None:
    services.start("api")
    services.start("watcher")
    services.start("transformer")
    services.wait_for_api()
    environment.drop("big.csv", b"fullname,age,location\n" + b"A B,1,C\n" * 5000)
    wait_until(lambda: environment.file_state("big.csv") is not None
               and environment.file_state("big.csv")["state"] == "processing",
               what="big.csv to be processing (no loader runs yet)")

    dom = chromium(environment, "--dump-dom").stdout

    assert "big.csv" in dom and "processing" in dom
    assert "<progress" in dom


def _visible_text(dom: str) -> str:
    import re
    from html import unescape

    body = re.sub(r"<style.*?</style>|<head.*?</head>", " ", dom, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


