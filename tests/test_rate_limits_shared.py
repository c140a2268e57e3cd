"""Documented limits hold across processes: N+1 requests spread over two gunicorn
processes that share one rate-limit store get exactly one 429, per client address
(beacons) and per key (failed sign-ins per e-mail), with the default machine-wide
storage and with Redis on 127.0.0.1:6379.

Two servers of one worker each, with the requests alternated between them, make
the spread certain: a single server's kernel may hand every connection to the same
worker on a busy machine, which proved nothing (and once failed CI). Two gunicorn
masters on one machine share the store exactly as two workers of one master do:
both are separate processes reading and writing the same counters.
"""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import LiveServer, beacon_body, csrf_token_from, require

# one_database: the rate-limit stores (a file, Redis), not the database.
pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

LIMIT = 40
# Lower for sign-ins: each failed one costs the servers a production Argon2 verification (~0.3 s of CPU).
SIGN_IN_LIMIT = 10
REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["machine", "redis"])
def limited_servers(request, database_url, tls_ca, tmp_path, app):
    env = {"WEB_CONCURRENCY": "1", "BEACON_RATE_LIMIT": f"{LIMIT}/minute", "LOGIN_RATE_LIMIT": "1000/minute",
           "LOGIN_ACCOUNT_RATE_LIMIT": f"{SIGN_IN_LIMIT}/minute", "LOGIN_ACCOUNT_ANY_ADDRESS_RATE_LIMIT": "1000/minute",
           "RATELIMIT_STORAGE_URI": f"machine://{(tmp_path / 'ratelimits.db').resolve()}",
           # The worker's pid in each access-log line: proof that two processes answered.
           "GUNICORN_CMD_ARGS": "--access-logformat 'pid=%(p)s %(r)s %(s)s'"}
    if request.param == "redis":
        require(_redis_answers(), f"Redis does not answer at {REDIS_URL}")
        env.update({"RATELIMIT_STORAGE_URI": REDIS_URL, "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}"})
    servers = [LiveServer(database_url, tls_ca, tmp_path / f"gunicorn-{n}.log", extra_env=env) for n in (1, 2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _pids(servers: list[LiveServer], path: str) -> set[str]:
    return {pid for server in servers
            for pid in re.findall(rf"pid=<?(\d+)>? POST {re.escape(path)}", server.log_path.read_text())}


def _spread(send, servers: list[LiveServer], count: int) -> list[int]:
    # Request n goes to server n % 2, new connections from 8 threads at once.
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda n: send(servers[n % len(servers)].url), range(count)))


def test_beacons_per_address_and_failed_sign_ins_per_email_get_one_429_after_the_limit(limited_servers, make_client,
                                                                                      tls_ca):
    """Both limits on the same two servers (one pair per storage kind: each start costs a few seconds)."""
    _client, key = make_client(name="Acme")

    def send_beacon(url: str) -> int:
        return requests.post(url + "/api/v1/beacons", data=json.dumps(beacon_body(key)),
                             headers={"Content-Type": "text/plain", "Connection": "close"},
                             verify=tls_ca["ca"], timeout=30).status_code

    answers = _spread(send_beacon, limited_servers, LIMIT + 1)
    assert answers.count(204) == LIMIT and answers.count(429) == 1, answers
    assert len(_pids(limited_servers, "/api/v1/beacons")) == 2, "the requests did not reach two processes"

    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"

    def send_sign_in(url: str) -> int:
        with requests.Session() as browser:
            browser.headers["Connection"] = "close"
            page = browser.get(url + "/login", verify=tls_ca["ca"], timeout=30)
            token = csrf_token_from(page.text)
            return browser.post(url + "/login", verify=tls_ca["ca"], timeout=30,
                                data={"email": email, "password": "wrong password!", "csrf_token": token},
                                headers={"Referer": url + "/login"}).status_code

    answers = _spread(send_sign_in, limited_servers, SIGN_IN_LIMIT + 1)
    assert answers.count(400) == SIGN_IN_LIMIT and answers.count(429) == 1, answers
    assert len(_pids(limited_servers, "/login")) == 2, "the requests did not reach two processes"
