"""Issue 16's billing views in a real Chromium against a real gunicorn over HTTPS, at 1280 and 390 px:
the course filter on the client page and the learners page's course statuses."""

from __future__ import annotations

import pytest
from billing_helpers import Truth, post_all
from conftest import TEST_PASSWORD
from test_admin_browser import page, shot, sign_in  # noqa: F401  (page is a fixture)
from test_billing_views import COURSE_BEACONS, COURSE_FIGURES, RANGE

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]


def no_sideways_scroll(page) -> bool:  # noqa: F811  (page here is a Playwright page)
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_billing_staff_filter_by_course_and_read_statuses_at_1280_and_390(page, live_server, client,  # noqa: F811
                                                                          make_client, make_staff, screenshots_dir):
    acme, key = make_client(name="Acme Learning With A Long Name")
    post_all(client, key, Truth(list(COURSE_BEACONS)))
    sign_in(page, live_server, make_staff("billing"))

    page.goto(f"{live_server.url}/billing/{acme.slug}?{RANGE}")
    assert page.locator("#stat-unique-users .value").inner_text() == "3"
    page.select_option("#course", "Course B")
    page.click("button:has-text('Show course')")
    page.wait_for_selector("#course-shown")
    users, launches, done, _, _ = COURSE_FIGURES["Course B"]
    assert page.locator("#stat-unique-users .value").inner_text() == str(users)
    assert page.locator("#stat-launches .value").inner_text() == str(launches)
    assert page.locator("#stat-completers .value").inner_text() == str(done)
    assert page.locator("#course-totals tbody tr").count() == 1
    assert page.locator("#course").input_value() == "Course B"
    # The beacons came without Origin and package ID: one row each, saying so.
    assert page.locator("#origin-usage tbody tr").all_inner_texts() == ["no origin sent\t2\t2"]
    assert page.locator("#package-usage tbody tr").all_inner_texts() == ["no package ID sent\t2\t2"]
    shot(page, screenshots_dir, "40-billing-course-filter")
    page.set_viewport_size({"width": 390, "height": 800})
    assert no_sideways_scroll(page), "the course filter fits at 390 px"
    shot(page, screenshots_dir, "41-billing-course-filter-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    # The learner list keeps the filter and shows each course's status.
    page.click("text=Who accessed what")
    page.wait_for_selector("#learners")
    assert "course=Course+B" in page.url
    statuses = page.locator("#learners ul.course-status li").all_inner_texts()
    assert sorted(" ".join(s.split()) for s in statuses) == ["Course B launched", "Course B passed"]
    shot(page, screenshots_dir, "42-billing-learners-status")
    page.set_viewport_size({"width": 390, "height": 800})
    assert no_sideways_scroll(page), "the learner list fits at 390 px"
    shot(page, screenshots_dir, "43-billing-learners-status-390")
    assert not page.problems, page.problems


def test_the_period_comparison_is_visible_at_1280_and_390(page, live_server, client, make_client,  # noqa: F811
                                                          make_staff, screenshots_dir):
    from test_period_comparison import CHANGE_BEACONS, NOVEMBER_CHANGES

    acme, key = make_client(name="Acme Learning With A Long Name")
    post_all(client, key, Truth(list(CHANGE_BEACONS)))
    # A client's own user (who lands on its usage page after signing in) sees the comparison too.
    page.goto(live_server.url + "/login")
    page.fill("#email", make_staff("client", client=acme).email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/billing/{acme.slug}")

    page.goto(f"{live_server.url}/billing/{acme.slug}?from=2026-11-01&to=2026-11-30")
    assert " ".join(page.locator("#comparison-range").inner_text().split()).startswith(
        "Each figure below is compared with the previous 30 days, 2026-10-02 to 2026-10-31")
    for name, figure in (("unique-users", "unique_users"), ("launches", "launches"), ("completers", "completers")):
        box = page.locator(f"#compare-{name}")
        assert box.is_visible()
        previous, change = NOVEMBER_CHANGES[figure]
        assert box.locator(".change").inner_text().strip() == change
        assert box.locator(".previous .figure").inner_text() == str(previous)
    shot(page, screenshots_dir, "44-billing-period-comparison")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.locator("#compare-unique-users").is_visible()
    assert no_sideways_scroll(page), "the comparison fits at 390 px"
    shot(page, screenshots_dir, "45-billing-period-comparison-390")
    comparison_close_up(page, screenshots_dir / "admin-45-billing-period-comparison-390-cards.png")

    # "show that range" opens the previous range, itself compared with the 30 days before it (nothing: new).
    page.click("#comparison-range a")
    page.wait_for_url("**from=2026-10-02&to=2026-10-31")
    assert page.locator("#compare-unique-users .change").inner_text().strip() == "+2 (new)"
    assert no_sideways_scroll(page), "the comparison fits at 390 px"
    shot(page, screenshots_dir, "46-billing-period-comparison-new-390")
    comparison_close_up(page, screenshots_dir / "admin-46-billing-period-comparison-new-390-cards.png")
    assert not page.problems, page.problems


def comparison_close_up(page, path) -> None:  # noqa: F811
    """The note and the cards at full size: a phone's whole page is too long to read when scaled down."""
    note, cards = page.locator("#comparison-range").bounding_box(), page.locator(".stats").bounding_box()
    page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": note["y"] - 8, "width": page.viewport_size[
        "width"], "height": cards["y"] + cards["height"] - note["y"] + 16})
