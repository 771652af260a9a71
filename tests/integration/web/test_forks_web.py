"""Customer projects in the web app: a fork's Base panel and inherited images, the base team's
Customers panel (the fleet), and the class migrations, in a real headless Chromium.

One seeded store for the module: workspace ``maker`` with the base project ``shapes`` (20
generated images in known splits, one of them and one class named as HTML) and two versions; the
customer ``store`` in workspace ``client``, forked from ``shapes@v1`` (so one version behind),
with five own test images, ``circle`` renamed to ``ring``, ``triangle`` dropped, and a version.
No model is trained: the fleet row says ``no model``. The browser, the tab fixture (which fails a
test on any dialog, script error or console error) and the helpers are test_web_app's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")

from tests.integration.api.conftest import start_server  # noqa: E402
from tests.integration.web import test_web_app as web  # noqa: E402
from tests.integration.web.test_web_app import EVIL, PAGE_SIZE, SPLIT_OF, grid_loaded, sign_in  # noqa: E402
from winnow.services import forks, schema  # noqa: E402
from winnow.services.auth import create_key  # noqa: E402
from winnow.services.ingest import import_records  # noqa: E402
from winnow.services.projects import create_project  # noqa: E402
from winnow.services.versions import create_version, load_version  # noqa: E402
from winnow.store.db import Store  # noqa: E402
from winnow.synthetic import generate  # noqa: E402

BASE_WS, BASE = "maker", "shapes"
CUSTOMER_WS, CUSTOMER = "client", "store"
EVIL_IMAGE = f"images/{EVIL}.png"
RENAMED = {"circle": "ring"}
DROPPED = "triangle"

# test_web_app's fixtures: one browser for the module; a fresh tab per test that fails the test on
# a dialog, a script error or a console error (a CSP violation)
browser = web.browser
page = web.page


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("forks-web")
    ds = generate(root / "base", 20, seed=5)
    for i, rec in enumerate(ds.images):
        rec.split = SPLIT_OF[i % 5]
    evil = next(r for r in ds.images if r.split == "train" and r.annotations)  # inherited: HTML as a name and a class
    evil.name = EVIL_IMAGE
    evil.annotations[0].label = EVIL
    ds.classes.append(EVIL)

    store = Store.open(root / "home")
    create_project(store, BASE, "detect", workspace=BASE_WS)
    import_records(store, BASE, ds, root / "base", workspace=BASE_WS)
    create_version(store, BASE, workspace=BASE_WS)
    forks.fork_project(store, BASE, "v1", CUSTOMER, workspace=CUSTOMER_WS, base_workspace=BASE_WS)
    own = generate(root / "own", 5, seed=9, prefix="own")
    for rec in own.images:
        rec.split = "test"  # the customer's own test set: the fleet can judge it (no model: "no model")
    import_records(store, CUSTOMER, own, root / "own", workspace=CUSTOMER_WS)
    for old, new in RENAMED.items():
        schema.rename_class(store, CUSTOMER, old, new, workspace=CUSTOMER_WS)
    schema.drop_inherited_class(store, CUSTOMER, DROPPED, workspace=CUSTOMER_WS)
    create_version(store, CUSTOMER, workspace=CUSTOMER_WS)
    more = generate(root / "more", 2, seed=11, prefix="more")  # the base moves on: v2, the fork is behind
    import_records(store, BASE, more, root / "more", workspace=BASE_WS)
    create_version(store, BASE, workspace=BASE_WS)

    # what the fork inherits, worked out from the base version itself: all but test, classes mapped
    manifest = load_version(store, BASE, "v1", workspace=BASE_WS).manifest
    inherited = {
        "base/" + r.name: sorted(RENAMED.get(a.label, a.label) for a in r.annotations if a.label != DROPPED)
        for r in manifest.images
        if r.split != "test"
    }
    srv, uv, thread = start_server(store)
    try:
        yield {
            "url": srv.url,
            "customer": create_key(store, CUSTOMER_WS, "viewer").key,
            "base": create_key(store, BASE_WS, "viewer").key,
            "inherited": inherited,
            "base_test": sum(1 for r in manifest.images if r.split == "test"),
        }
    finally:
        uv.should_exit = True
        thread.join(10)
        store.close()


def fleet_calls(page) -> list[str]:
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if r.url.endswith("/fleet") else None)
    return calls


def test_a_fork_shows_its_base_version_class_map_and_migrations(page, world):
    calls = fleet_calls(page)
    sign_in(page, world, world["customer"], route=f"#/p/{CUSTOMER}")
    page.wait_for_selector("#base .class-map-row")
    assert page.locator("#fork-of strong").inner_text() == f"{BASE_WS}/{BASE}@v1"
    assert page.locator("#base-ref").inner_text() == f"{BASE_WS}/{BASE}@v1"
    assert page.locator("#base-behind").inner_text() == "behind: v2 available"
    n = len(world["inherited"])
    counts = page.locator("#base-counts").inner_text()
    assert counts.startswith(f"{n} inherited images") and f"its {world['base_test']} test images" in counts
    assert page.locator("#base-adopted").inner_text() == "0 adopted"
    mapping = dict(zip(page.locator("#class-map .base-class").all_inner_texts(), page.locator("#class-map .mapped").all_inner_texts(), strict=True))
    assert mapping == {
        "circle": "ring (renamed)",
        "square": "square (same name)",
        "triangle": "dropped: its inherited labels are left out",
        EVIL: f"{EVIL} (same name)",  # the HTML class name as text
    }
    migrations = page.locator("#migrations .migration-text").all_inner_texts()
    assert migrations == ["renamed circle → ring", "dropped the base class triangle"]
    assert page.locator("#migrations .migration-seq").all_inner_texts() == ["#1", "#2"]
    assert page.locator("#customers").count() == 0 and calls == []  # no customers: the fleet is not asked for
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("#browse-base").inner_text() == f"Browse the {n} inherited images"
    assert "null" not in page.locator("#main").inner_text()  # a panel left out leaves nothing behind


def test_the_inherited_grid_shows_the_base_version_s_train_and_valid_images_with_their_boxes(page, world):
    sign_in(page, world, world["customer"], route=f"#/p/{CUSTOMER}")
    page.click("#browse-base")
    page.wait_for_url(f"**/#/p/{CUSTOMER}/base")
    names = sorted(world["inherited"])
    shown = min(len(names), PAGE_SIZE)
    page.wait_for_function(f"() => document.querySelectorAll('#grid .cell').length === {shown}")
    grid_loaded(page)
    cells = page.locator("#grid .cell-name").all_inner_texts()
    assert cells == names[:shown] and all(c.startswith("base/") for c in cells)
    assert f"base/{EVIL_IMAGE}" in cells  # the HTML image name as text
    assert page.locator("#showing").inner_text() == f"images 1–{shown} of {len(names)}"
    for cell in page.locator("#grid .cell").all():
        name = cell.get_attribute("data-name")
        assert sorted(cell.locator("text.box-label").all_text_contents()) == world["inherited"][name], name
        assert cell.locator("rect.box").count() == len(world["inherited"][name]), name
    assert page.locator("#grid rect.box").count() > 0
    assert page.locator("#grid a.cell").count() == 0  # nothing adopted: no cell links to a page of its own
    assert page.locator('img[src="x"]').count() == 0


def test_the_base_team_sees_its_customer_with_the_fleet_verdict(page, world):
    calls = fleet_calls(page)
    sign_in(page, world, world["base"], route=f"#/p/{BASE}")
    page.wait_for_selector("#fleet-summary")
    assert page.locator("#fleet-status").count() == 0 and len(calls) == 1
    row = page.locator("#customers .customer-row")
    assert row.count() == 1
    assert row.locator(".customer-name").inner_text() == f"{CUSTOMER_WS}/{CUSTOMER}"
    assert row.locator(".customer-base").inner_text() == "v1 behind: v2 available"
    assert row.locator(".customer-model").inner_text() == "no model"
    assert row.locator(".verdict").inner_text() == "no model"
    assert "5 test images" in row.inner_text()
    assert row.locator(".labels-share").inner_text().startswith("0.0%")  # only own test images: none to train on
    assert "Base model: none" in page.locator("#fleet-summary").inner_text()
    assert page.locator("#base").count() == 0 and page.locator("#migrations").count() == 0
    assert "null" not in page.locator("#main").inner_text()


def test_when_the_fleet_fails_the_customers_come_from_the_forks_list(page, world):
    page.route("**/fleet", lambda route: route.fulfill(status=500, json={"error": "evaluation broke"}))
    sign_in(page, world, world["base"], route=f"#/p/{BASE}")
    page.wait_for_selector("#fleet-status.error")
    assert "evaluation broke" in page.locator("#fleet-status").inner_text()
    row = page.locator("#customers .customer-row")
    assert row.locator(".customer-name").inner_text() == f"{CUSTOMER_WS}/{CUSTOMER}"
    assert row.locator(".customer-base").inner_text() == "v1 behind: v2 available"
    assert row.locator(".verdict").inner_text() == "–"
