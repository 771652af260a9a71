"""The web app in a real headless Chromium against a real server on a localhost port.

One seeded store for the module: workspace ``acme`` with project ``shapes`` (31 generated images
with boxes in known splits, one exact duplicate, a version, a queue batch and, when torch is
installed, a tiny trained model) and an empty project. Dataset strings that are HTML (an image
name, a class, a tag, a metadata value) must show as text and never run: every test fails if the
page opened a dialog, threw, or broke its Content-Security-Policy.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")

from tests.integration.api.conftest import start_server  # noqa: E402
from winnow.core.types import ImageRecord  # noqa: E402
from winnow.services.auth import create_key  # noqa: E402
from winnow.services.ingest import import_records  # noqa: E402
from winnow.services.projects import create_project  # noqa: E402
from winnow.services.queue import QueueItemIn, create_batch  # noqa: E402
from winnow.services.versions import create_version  # noqa: E402
from winnow.store.db import Store  # noqa: E402
from winnow.synthetic import generate  # noqa: E402

EVIL = "<img src=x onerror=alert(1)>"
EVIL_IMAGE = f"images/{EVIL}.png"
N_IMAGES = 30  # generated; plus one exact copy = 31 records
SPLIT_OF = {0: "train", 1: "train", 2: "train", 3: "valid", 4: "test"}  # by index % 5
PAGE_SIZE = 24  # app.js's PAGE_SIZE
MODEL = "web-tiny"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    data = root / "data"
    dataset = generate(data, N_IMAGES, seed=3)
    for i, rec in enumerate(dataset.images):
        rec.split = SPLIT_OF[i % 5]
        rec.tags = ["night"] if i % 3 == 0 else []
        rec.metadata = {"camera": f"cam-{i % 2}"}
    first = dataset.images[0]
    first.name = EVIL_IMAGE  # an image name, a class, a tag and a metadata value that are HTML
    first.annotations[0].label = EVIL
    first.tags = ["night", EVIL]
    first.metadata = {"camera": EVIL, "note": "<script>alert(2)</script>"}
    second = dataset.images[1]
    dataset.images.append(
        ImageRecord(name="images/copy_of_second.png", width=second.width, height=second.height, file=second.file,
                    split=second.split, annotations=list(second.annotations))
    )
    dataset.classes.append(EVIL)

    store = Store.open(root / "home")
    create_project(store, "shapes", "detect", workspace="acme")
    create_project(store, "empty", "detect", workspace="acme")
    report = import_records(store, "shapes", dataset, data, workspace="acme")
    assert report.images_added == N_IMAGES + 1, report.as_dict()
    version = create_version(store, "shapes", workspace="acme", name="first")
    create_batch(store, "shapes", [QueueItemIn(r.name) for r in dataset.images[5:8]], name="round-1", workspace="acme")
    trained = None
    if importlib.util.find_spec("torch") is not None:  # the `train` extra: a tiny real model (a few seconds)
        import torch

        from winnow.services.training import train_model

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            trained = train_model(store, "shapes", version.version, workspace="acme", epochs=1, image_size=64,
                                  width=0.25, batch_size=8, name=MODEL)
        finally:
            torch.set_num_threads(threads)

    reports = root / "reports"
    reports.mkdir()
    (reports / "demo.html").write_text("<!doctype html><p>the demo</p>")
    srv, uv, thread = start_server(store, reports=reports)
    expected = {rec.name: [a.label for a in rec.annotations] for rec in dataset.images}
    try:
        yield {
            "url": srv.url,
            "store": store,
            "admin": create_key(store, "acme", "admin").key,
            "viewer": create_key(store, "acme", "viewer", name="the-viewer").key,
            "labels": expected,
            "splits": {rec.name: rec.split for rec in dataset.images},
            "version": version,
            "model": trained,
        }
    finally:
        uv.should_exit = True
        thread.join(10)
        store.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh tab (own sessionStorage) that records dialogs, script errors and CSP violations."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    dialogs, errors, console = [], [], []

    def on_dialog(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    yield tab
    context.close()
    assert dialogs == [], f"a script from the data ran: {dialogs}"
    assert errors == [], f"the page threw: {errors}"
    unexpected = [m for m in console if not m.startswith("Failed to load resource")]  # 401/404 answers are logged so
    assert unexpected == [], f"console errors (a CSP violation?): {unexpected}"


def sign_in(page, site, key: str | None = None, route: str = "") -> None:
    page.goto(f"{site['url']}/#key={key or site['admin']}")
    page.wait_for_selector("#who:not([hidden])")
    if route:
        page.evaluate("r => { location.hash = r }", route)


def grid_loaded(page) -> None:
    """Every thumbnail has its bytes and its boxes."""
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('#grid img')];"
        " return imgs.length > 0 && imgs.every(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0); }"
    )


# ----------------------------------------------------------------------------- sign-in


def test_a_key_in_the_fragment_signs_in_shows_the_role_and_leaves_the_address_bar(page, site):
    sign_in(page, site, site["viewer"])
    assert page.locator("#who-text").inner_text() == "acme · viewer (key the-viewer)"
    page.wait_for_selector(".project-link")
    assert page.locator(".project-link").all_inner_texts() == ["empty", "shapes"]
    assert "key=" not in page.url and site["viewer"] not in page.url
    assert page.evaluate("() => sessionStorage.getItem('winnow.key')") == site["viewer"]
    shapes = page.locator(".project-row", has_text="shapes")
    assert shapes.locator("td").nth(2).inner_text() == str(N_IMAGES + 1)
    page.reload()  # the key stays for the tab
    page.wait_for_selector(".project-link")
    page.click("#sign-out")
    assert page.locator("#signin").is_visible() and page.locator(".project-link").count() == 0
    assert page.evaluate("() => sessionStorage.getItem('winnow.key')") is None


def test_a_bad_key_shows_the_api_s_401_message_and_no_data(page, site):
    page.goto(f"{site['url']}/#key=wn_not-a-real-key")
    error = page.locator("#signin-error")
    error.wait_for()
    assert "a valid API key is required" in error.inner_text()
    assert page.locator("#main").is_hidden() and page.locator(".project-link").count() == 0
    assert "shapes" not in page.locator("body").inner_text()
    assert page.evaluate("() => sessionStorage.getItem('winnow.key')") is None

    page.fill("#signin-key", "wn_still-wrong")  # the form: the same answer
    page.click("#signin-form button")  # the old message goes at once, the answer brings it back
    page.wait_for_function("() => { const e = document.getElementById('signin-error');"
                           " return !e.hidden && e.textContent.includes('a valid API key is required'); }")
    assert page.locator(".project-link").count() == 0
    page.fill("#signin-key", site["admin"])
    page.click("#signin-form button")
    page.wait_for_selector(".project-link")
    assert page.locator("#signin-error").is_hidden() and "admin" in page.locator("#who-text").inner_text()


def test_the_page_is_served_with_a_strict_csp_and_lists_the_reports(page, site):
    response = page.goto(site["url"] + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "img-src 'self' blob: data:" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.locator("#signin").is_visible()
    link = page.locator("#reports a")
    assert link.all_inner_texts() == ["demo.html"]
    link.click()
    page.wait_for_url("**/reports/demo.html")
    assert page.locator("p").inner_text() == "the demo"


# ----------------------------------------------------------------------------- the project page


def test_the_project_page_shows_counts_classes_versions_models_queue_and_findings(page, site):
    sign_in(page, site, route="#/p/shapes")
    page.wait_for_selector("#project-name")
    assert page.locator("#project-name").inner_text() == "shapes"
    stats = dict(zip(page.locator(".stat-label").all_inner_texts(), page.locator(".stat-value").all_inner_texts(), strict=True))
    assert stats["images"] == str(N_IMAGES + 1)
    assert stats["annotations"] == str(sum(len(v) for v in site["labels"].values()))

    classes = page.locator("#classes .bar-label").all_inner_texts()
    assert classes[-1] == EVIL and set(classes) == {"circle", "square", "triangle", EVIL}  # shown literally
    splits = dict(zip(page.locator("#splits .bar-label").all_inner_texts(), page.locator("#splits .bar-value").all_inner_texts(), strict=True))
    counts = {s: sum(1 for v in site["splits"].values() if v == s) for s in ("train", "valid", "test")}
    assert splits == {s: f"{n} images" for s, n in counts.items()}
    tags = page.locator("#splits .chip").evaluate_all("els => els.map(e => [e.firstChild.textContent, e.lastChild.textContent])")
    assert sorted(tags) == sorted([[EVIL, "1"], ["night", str(sum(1 for i in range(N_IMAGES) if i % 3 == 0))]]), tags

    version = site["version"]
    assert page.locator("#versions .version-number").all_inner_texts() == [f"v{version.number}"]
    assert page.locator("#versions tbody tr").first.locator("td").nth(1).inner_text() == "first"
    if site["model"] is None:
        assert "No models yet" in page.locator("#models").inner_text()
    else:
        row = page.locator("#models .model-row")
        assert row.count() == 1 and row.locator(".model-name").inner_text() == MODEL
        cells = row.locator("td").all_inner_texts()
        assert cells[1:4] == ["ready", "ssdlite", f"v{version.number}"]
        valid = site["model"].metrics["valid"]
        assert cells[4] == f"valid: map {valid['map']:.3f} · map50 {valid['map50']:.3f} ({valid['images']} images)"
    batch = page.locator("#queue .batch-row")
    assert batch.locator(".batch-name").inner_text() == "round-1"
    cells = batch.locator("td").all_inner_texts()
    assert cells[2] == "to label" and cells[3:5] == ["3", "3"]  # 3 items, 3 to label

    page.click("#run-checks")
    page.wait_for_selector("#findings-summary")
    assert re.match(r"\d+ findings on \d+ of 31 images", page.locator("#findings-summary").inner_text())
    notes = page.locator("#findings-notes li").all_inner_texts()
    if site["model"] is None:  # the detection label-error checks say why they did not run
        assert any(n.startswith("missing_box: ") and "no ready detection model" in n for n in notes), notes
    else:
        assert not any("no ready detection model" in n for n in notes), notes
    if page.locator("#all-findings").count():
        page.click("#all-findings")
    checks = page.locator("#findings .finding-check").all_inner_texts()
    assert "exact_duplicate" in checks
    dup = page.locator("#findings .finding", has=page.locator(".finding-check", has_text="exact_duplicate"))
    assert set(dup.locator(".finding-images a").all_inner_texts()) == {"images/copy_of_second.png", "images/img_00001.png"}


# ----------------------------------------------------------------------------- the image grid


def test_the_grid_pages_and_filters_and_draws_every_box(page, site):
    sign_in(page, site, route="#/p/shapes/images")
    page.wait_for_selector("#grid .cell")
    grid_loaded(page)
    names = sorted(site["labels"])
    assert page.locator("#grid .cell").count() == PAGE_SIZE
    assert page.locator("#showing").inner_text() == f"images 1–{PAGE_SIZE} of {len(names)}"
    shown = page.locator("#grid .cell-name").all_inner_texts()
    assert shown == names[:PAGE_SIZE] and shown[0] == EVIL_IMAGE  # the HTML name as text
    for cell in page.locator("#grid .cell").all()[:8]:
        name = cell.get_attribute("data-name")
        labels = site["labels"][name]
        assert cell.locator("rect.box").count() == len(labels), name
        assert sorted(cell.locator("text.box-label").all_text_contents()) == sorted(labels), name
    assert page.locator("#grid rect.box").count() == sum(len(site["labels"][n]) for n in names[:PAGE_SIZE])
    assert page.locator('img[src="x"]').count() == 0

    page.click("#next")
    page.wait_for_function(f"() => document.querySelectorAll('#grid .cell').length === {len(names) - PAGE_SIZE}")
    assert page.locator("#grid .cell-name").all_inner_texts() == names[PAGE_SIZE:]
    assert page.locator("#next").count() == 0 and page.locator("#prev").count() == 1

    page.select_option("#filter-split", "valid")
    valid = sorted(n for n, s in site["splits"].items() if s == "valid")
    page.wait_for_function(f"() => document.querySelectorAll('#grid .cell').length === {len(valid)} && !location.hash.includes('offset')")
    assert page.locator("#grid .cell-name").all_inner_texts() == valid
    assert page.locator("#showing").inner_text() == f"images 1–{len(valid)} of {len(valid)}"  # the total follows the filter
    assert "split=valid" in page.url

    page.select_option("#filter-class", EVIL)  # an HTML class name as a filter value
    page.wait_for_function("() => document.querySelectorAll('#grid .cell, .muted').length > 0 && location.hash.includes('class=')")
    page.wait_for_selector("text=No image matches these filters.")  # the evil image is in train
    page.select_option("#filter-split", "train")
    page.wait_for_function("() => document.querySelectorAll('#grid .cell').length === 1")
    assert page.locator("#grid .cell-name").all_inner_texts() == [EVIL_IMAGE]
    grid_loaded(page)
    assert EVIL in page.locator("#grid text.box-label").all_text_contents()

    page.evaluate("r => { location.hash = r }", "#/p/shapes/images?tag=night")
    night = [n for n in names if n == EVIL_IMAGE or n.startswith("images/img_") and int(n[-9:-4]) % 3 == 0]
    page.wait_for_function(f"() => document.querySelectorAll('#grid .cell').length === {len(night)}")
    assert page.locator("#grid .cell-name").all_inner_texts() == night


# ----------------------------------------------------------------------------- one image


def test_the_image_page_draws_its_boxes_and_shows_its_labels_tags_and_metadata_as_text(page, site):
    sign_in(page, site, route="#/p/shapes/images?tag=" + "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    page.wait_for_selector("#grid .cell")
    page.click("#grid .cell")
    page.wait_for_selector("#image-name")
    assert page.locator("#image-name").inner_text() == EVIL_IMAGE
    labels = site["labels"][EVIL_IMAGE]
    page.wait_for_function("() => { const i = document.querySelector('.frame.full img'); return i && i.complete && i.naturalWidth > 0; }")
    assert page.locator(".frame.full rect.box").count() == len(labels)
    assert sorted(page.locator(".frame.full text.box-label").all_text_contents()) == sorted(labels)
    assert sorted(page.locator("#annotations .annotation-label").all_inner_texts()) == sorted(labels)
    assert page.locator("#annotations tbody tr").count() == len(labels)
    assert sorted(page.locator("#tags .chip").all_inner_texts()) == sorted(["night", EVIL])
    metadata = page.locator("#metadata tbody").inner_text()
    assert EVIL in metadata and "<script>alert(2)</script>" in metadata
    assert page.locator('img[src="x"]').count() == 0 and page.locator("#main script").count() == 0

    # the boxes sit on the picture: the SVG's first box lands inside the drawn image
    box = page.locator(".frame.full rect.box").first.bounding_box()
    frame = page.locator(".frame.full img").bounding_box()
    assert frame["x"] <= box["x"] < box["x"] + box["width"] <= frame["x"] + frame["width"] + 1

    page.goto(f"{site['url']}/#/p/shapes/image/{'images%2Fno-such.png'}")  # a missing image: the API's 404 text
    page.wait_for_selector("#main .error")
    assert page.locator("#main .error").inner_text() == "project 'shapes' has no image 'images/no-such.png'"
