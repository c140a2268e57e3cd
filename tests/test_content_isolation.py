"""Isolation: a course's script, opened top-level by a signed-in admin, can act for nobody.

One live gunicorn answers two host names: https://127.0.0.1:PORT (the app, PUBLIC_URL)
and https://localhost:PORT (the content, CONTENT_URL). The admin signs in on the app
origin in a real Chromium; then the same browser opens a remote package's page on the
content origin, whose script tries to read admin pages, create a staff user, frame the
app and read cookies. Every attempt must fail, and the database must be unchanged.
"""

from __future__ import annotations

import json

import pytest
import requests
from conftest import TEST_PASSWORD
from remote_browser import build_remote, content_origin, context, count  # noqa: F401
from sqlalchemy import select

from app.extensions import db
from app.models import ClientKey, StaffUser

# one_database: origins, cookies and CSP in a browser.
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]

ATTACK = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Course</title></head><body>
<p id="state">running</p>
<iframe id="probe" name="probe"></iframe>
<form id="form" method="post" action="@APP@/admin/staff" target="probe">
  <input name="email" value="intruder@evil.example"><input name="role" value="admin">
  <input name="password" value="intruder-password-123">
</form>
<script>
  var APP = "@APP@", SLUG = "@SLUG@";
  var results = window.results = {violations: []};
  document.addEventListener("securitypolicyviolation", function (e) {
    results.violations.push(e.violatedDirective + " " + e.blockedURI);
  });
  results.cookie = document.cookie;
  function attempt(name, promise) {
    return promise.then(function (r) { results[name] = "read:" + r; },
                        function (e) { results[name] = "blocked"; });
  }
  var body = "email=intruder%40evil.example&role=admin&password=intruder-password-123";
  Promise.all([
    attempt("read_admin", fetch(APP + "/admin/", {credentials: "include"}).then(function (r) { return r.text(); })),
    attempt("read_usage", fetch(APP + "/api/v1/clients/" + SLUG + "/usage?from=2020-01-01&to=2030-01-01",
                                {credentials: "include"}).then(function (r) { return r.status; })),
    attempt("rotate_key", fetch(APP + "/admin/clients/" + SLUG + "/rotate-key",
                                {method: "POST", credentials: "include"}).then(function (r) { return r.status; })),
    // A blind, credentialed cross-site POST (no CORS needed to send it).
    fetch(APP + "/admin/staff", {method: "POST", mode: "no-cors", credentials: "include",
                                 headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: body})
      .then(function () { results.blind_post = "sent"; }, function () { results.blind_post = "blocked"; })
  ]).then(function () {
    try { document.getElementById("form").submit(); results.form = "submitted"; } catch (e) { results.form = "blocked"; }
    var frame = document.createElement("iframe");
    frame.src = APP + "/admin/staff";
    frame.onload = function () {
      try { results.frame = "read:" + frame.contentDocument.body.innerHTML.length; } catch (e) { results.frame = "blocked"; }
      var popup = window.open(APP + "/admin/", "_blank");
      setTimeout(function () {
        try { results.popup = "read:" + popup.document.body.innerHTML.length; } catch (e) { results.popup = "blocked"; }
        try { popup.close(); } catch (e) { }
        results.done = true;
      }, 1500);
    };
    document.body.appendChild(frame);
  });
</script></body></html>"""


def test_course_script_opened_by_a_signed_in_admin_can_act_for_nobody(context, live_server, make_client, make_staff,
                                                                       tmp_path):
    customer, _ = make_client()
    admin = make_staff("admin")
    folder = tmp_path / "attack"
    folder.mkdir()
    (folder / "index.html").write_text(ATTACK.replace("@APP@", live_server.url).replace("@SLUG@", customer.slug))
    _, built = build_remote(customer, "1.2", live_server, content=folder)
    keys_before = count(ClientKey)

    # The admin signs in on the app origin.
    page = context.new_page()
    page.goto(live_server.url + "/login")
    page.fill("input[name=email]", admin.email)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
    assert [c["name"] for c in context.cookies(live_server.url)], "the admin has a session"
    # Sanity: the same reads from the app's own origin do succeed, so the attack below is not vacuous.
    assert page.evaluate("fetch('/admin/').then(r => r.status)") == 200

    # The same browser opens the course top-level on the content origin.
    attack = context.new_page()
    set_cookies = []
    attack.on("response", lambda r: set_cookies.append(r.url) if "set-cookie" in r.headers else None)
    attack.goto(built.content_url)  # the player, which frames the course
    attack.wait_for_selector("#course")
    course = attack.frame(name="course")
    course.wait_for_function("window.results && window.results.done === true", timeout=30_000)
    results = course.evaluate("window.results")
    assert results["cookie"] == ""
    for name in ("read_admin", "read_usage", "rotate_key", "frame", "popup"):
        assert results[name] == "blocked", (name, results)
    assert any(v.startswith("form-action") for v in results["violations"]), results
    assert set_cookies == [] and context.cookies(content_origin(live_server)) == []

    # Nothing changed: no staff user, no key rotated.
    db.session.rollback()
    assert [u.email for u in db.session.scalars(select(StaffUser))] == [admin.email]
    assert count(ClientKey) == keys_before
    page.close()
    attack.close()


def test_each_host_name_answers_404_for_the_others_addresses_over_real_https(live_server, make_client, tls_ca):
    customer, _ = make_client()
    _, built = build_remote(customer, "2004", live_server)
    content = content_origin(live_server)
    launch = requests.get(built.content_url, verify=tls_ca["ca"], allow_redirects=False, timeout=10)
    assert launch.status_code == 302 and not launch.cookies
    page_path = launch.headers["Location"]
    assert requests.get(content + page_path, verify=tls_ca["ca"], timeout=10).status_code == 200
    # Content on the app origin: 404.
    for path in (page_path, built.content_url.split(content, 1)[1]):
        assert requests.get(live_server.url + path, verify=tls_ca["ca"], timeout=10).status_code == 404
    # App pages and APIs on the content origin: 404, and never a cookie.
    for method, path in (("GET", "/login"), ("GET", "/healthz"), ("GET", "/admin/"), ("GET", "/billing/"),
                         ("POST", "/api/v1/beacons"), ("POST", "/login")):
        answer = requests.request(method, content + path, verify=tls_ca["ca"], timeout=10,
                                  data=json.dumps({"key": "x"}), allow_redirects=False)
        assert answer.status_code == 404, (method, path)
        assert "set-cookie" not in {k.lower() for k in answer.headers}, path
