"""Issue 16's billing views in a real Chromium against a real gunicorn over HTTPS, at 1280 and 390 px:
the course filter on the client page and the learners page's course statuses."""

from __future__ import annotations

import pytest
from billing_helpers import Truth, post_all
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
