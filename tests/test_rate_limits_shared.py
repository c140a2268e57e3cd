"""Documented limits hold across every worker of a real gunicorn: N+1 requests spread over
both workers get exactly one 429, per client address (beacons) and per key (failed sign-ins
per e-mail), with the default machine-wide storage and with Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import LiveServer, beacon_body, csrf_token_from, require

pytestmark = pytest.mark.e2e

LIMIT = 40
REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["machine", "redis"])
def limited_server(request, database_url, tls_ca, tmp_path, app):
    env = {"WEB_CONCURRENCY": "2", "BEACON_RATE_LIMIT": f"{LIMIT}/minute", "LOGIN_RATE_LIMIT": "1000/minute",
           "LOGIN_ACCOUNT_RATE_LIMIT": f"{LIMIT}/minute",
           # The worker's pid in each access-log line: proof that both workers answered.
           "GUNICORN_CMD_ARGS": "--access-logformat 'pid=%(p)s %(r)s %(s)s'"}
    if request.param == "redis":
        require(_redis_answers(), f"Redis does not answer at {REDIS_URL}")
        env.update({"RATELIMIT_STORAGE_URI": REDIS_URL, "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}"})
    server = LiveServer(database_url, tls_ca, tmp_path / "gunicorn.log", extra_env=env).start()
    yield server
    server.stop()


def _pids(server: LiveServer, path: str) -> set[str]:
    return set(re.findall(rf"pid=<?(\d+)>? POST {re.escape(path)}", server.log_path.read_text()))


def _spread(send, count: int) -> list[int]:
    # New connections from 8 threads at once: the kernel hands them to whichever worker accepts.
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _n: send(), range(count)))


def test_beacons_per_address_one_429_after_the_limit(limited_server, make_client, tls_ca):
    _client, key = make_client(name="Acme")

    def send() -> int:
        return requests.post(limited_server.url + "/api/v1/beacons", data=json.dumps(beacon_body(key)),
                             headers={"Content-Type": "text/plain", "Connection": "close"},
                             verify=tls_ca["ca"], timeout=30).status_code

    answers = _spread(send, LIMIT + 1)
    assert answers.count(204) == LIMIT and answers.count(429) == 1, answers
    assert len(_pids(limited_server, "/api/v1/beacons")) == 2, "the requests did not reach both workers"


def test_failed_sign_ins_per_email_one_429_after_the_limit(limited_server, tls_ca):
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"

    def send() -> int:
        with requests.Session() as browser:
            browser.headers["Connection"] = "close"
            page = browser.get(limited_server.url + "/login", verify=tls_ca["ca"], timeout=30)
            token = csrf_token_from(page.text)
            return browser.post(limited_server.url + "/login", verify=tls_ca["ca"], timeout=30,
                                data={"email": email, "password": "wrong password!", "csrf_token": token},
                                headers={"Referer": limited_server.url + "/login"}).status_code

    answers = _spread(send, LIMIT + 1)
    assert answers.count(400) == LIMIT and answers.count(429) == 1, answers
    assert len(_pids(limited_server, "/login")) == 2, "the requests did not reach both workers"
