"""Rate limits (invitelink.rate_limits): the admin login throttle, the supplier API limit keyed on valid keys only,
send_mail's flood limit, exact counts across instances sharing Redis, per-process counts without it, the fallback
when Redis is down, and the bound on concurrent argon2 work."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from invitelink import security
from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.db import transaction
from invitelink.rate_limits import MemoryWindows, RateLimits, Rule
from invitelink.services import accounts
from invitelink.services.errors import RateLimited
from tests.conftest import PASSWORD, Admin, MakeSurvey
from tests.invites import invite
from tests.test_sosci import Sosci
from tests.test_supply import Supply

REDIS_URL = os.environ.get("INVITELINK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LOGIN = "/admin/v1/auth/token"
ACCEPT = "/admin/v1/invitations/accept"
THROTTLED = {"detail": "too many failed logins; try again later"}
INCORRECT = {"detail": "incorrect e-mail or password"}


@dataclass
class SharedRedis:
    url: str
    prefix: str
    client: redis.Redis

    def stored(self) -> list[bytes]:
        return list(self.client.scan_iter(f"{self.prefix}:*"))


@pytest.fixture
def shared_redis() -> Iterator[SharedRedis]:
    """The test Redis with a key prefix of this test's own, emptied afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL} (INVITELINK_TEST_REDIS_URL)")
    shared = SharedRedis(REDIS_URL, f"invitelink-test-{uuid.uuid4().hex[:12]}", client)
    yield shared
    for key in shared.stored():
        client.delete(key)
    client.close()


@pytest.fixture(autouse=True)
def default_password_work() -> Iterator[None]:
    """Tests here narrow the process's argon2 slots; the next test starts from the defaults again."""
    yield
    security.limit_password_work(4, 2.0)


def limited(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(update=update)


def with_redis(settings: Settings, shared: SharedRedis, **update: Any) -> Settings:
    return limited(settings, redis_url=shared.url, redis_key_prefix=shared.prefix, **update)


def new_account(app: FastAPI) -> str:
    """An account that never logged in (so no address is known for it yet); its e-mail."""
    email = f"user-{uuid.uuid4().hex[:8]}@example.org"
    with transaction(app.state.database.sessions) as session:
        accounts.create_admin(session, email, PASSWORD, "Lab")
    return email


def login(client: TestClient, email: str, password: str) -> httpx.Response:
    response: httpx.Response = client.post(LOGIN, data={"username": email, "password": password})
    return response


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == THROTTLED
    assert int(response.headers["retry-after"]) >= 1


# The admin login ------------------------------------------------------------------------------------------------


def test_login_throttle_per_account_treats_unknown_and_known_emails_alike(settings: Settings) -> None:
    app = create_app(limited(settings, login_failures_per_account=3, login_failures_per_address=100))
    known, unknown = new_account(app), "nobody-here@example.org"
    with TestClient(app) as client:
        answers = {email: [login(client, email, "wrong password") for _ in range(4)] for email in (known, unknown)}
        for responses in answers.values():
            assert [r.status_code for r in responses] == [401, 401, 401, 429]
            assert [r.json() for r in responses] == [INCORRECT] * 3 + [THROTTLED]
            assert_throttled(responses[-1])
            assert 1 <= int(responses[-1].headers["retry-after"]) <= 900
        # The e-mail as typed is normalised: another spelling is the same account.
        assert_throttled(login(client, f"  {known.upper()} ", "wrong password"))
        # The right password is refused too: this address never logged into the account.
        assert_throttled(login(client, known, PASSWORD))
        # Refused before any argon2 work: with the only argon2 slot held here, a login that needed one would wait
        # and give up (503); the throttle answers at once.
        security.limit_password_work(1, 0.2)
        with security.password_slot():
            assert_throttled(login(client, unknown, "wrong password"))
            assert login(client, "someone-else@example.org", "wrong password").status_code == 503


def test_accepting_invitations_with_a_password_shares_the_login_throttle(settings: Settings) -> None:
    """Anyone can make a workspace and invite any address: without the login's limits, invitation after invitation
    would let its secret's holder guess the invited account's password without end."""
    app = create_app(limited(settings, login_failures_per_account=3, login_failures_per_address=100))
    victim = new_account(app)
    with TestClient(app) as client:
        attacker = login(client, new_account(app), PASSWORD).json()["access_token"]
        headers = {"Authorization": f"Bearer {attacker}"}
        answers = []
        for _ in range(4):  # a fresh invitation each time
            secret = invite(client, headers, victim)["secret"]
            answers.append(client.post(ACCEPT, json={"secret": secret, "password": "a wrong guess"}))
        assert [a.status_code for a in answers] == [401, 401, 401, 429], [a.text for a in answers]
        # And the login sees the same count.
        assert_throttled(login(client, victim, "another guess"))


def test_login_throttle_per_address(settings: Settings) -> None:
    app = create_app(limited(settings, login_failures_per_account=100, login_failures_per_address=3))
    email = new_account(app)
    with (
        TestClient(app, client=("203.0.113.7", 5000)) as guesser,
        TestClient(app, client=("198.51.100.2", 5000)) as other,
    ):
        codes = [login(guesser, f"victim{n}@example.org", "guess").status_code for n in range(3)]
        assert codes == [401, 401, 401]
        # The address is spent, for every account, known or not.
        assert_throttled(login(guesser, "victim9@example.org", "guess"))
        assert_throttled(login(guesser, email, PASSWORD))
        # Another address is not held up by it.
        assert login(other, "victim9@example.org", "guess").json() == INCORRECT
        assert login(other, email, PASSWORD).status_code == 200


def test_successes_do_not_count_and_a_known_address_gets_past_a_full_account_window(settings: Settings) -> None:
    app = create_app(limited(settings, login_failures_per_account=2, login_failures_per_address=100))
    email = new_account(app)
    with TestClient(app, client=("192.0.2.10", 1)) as owner, TestClient(app, client=("203.0.113.66", 1)) as attacker:
        assert [login(owner, email, PASSWORD).status_code for _ in range(5)] == [200] * 5
        # One failure from elsewhere leaves room: the owner's next login goes through.
        assert login(attacker, email, "guess").status_code == 401
        assert login(owner, email, PASSWORD).status_code == 200
        # The attacker fills the account's window ...
        assert login(attacker, email, "guess").status_code == 401
        assert_throttled(login(attacker, email, "guess"))
        assert_throttled(login(attacker, email, PASSWORD))
        # ... which does not lock out the owner, at the address the account logged in from before.
        token = login(owner, email, PASSWORD)
        assert token.status_code == 200, token.text
        me = owner.get("/admin/v1/auth/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
        assert me.json()["user"]["email"] == email


def test_login_throttle_is_one_count_for_two_instances_sharing_redis(
    settings: Settings, shared_redis: SharedRedis
) -> None:
    shared = with_redis(settings, shared_redis, login_failures_per_account=3, login_failures_per_address=100)
    first, second = create_app(shared), create_app(shared)
    email = new_account(first)
    with TestClient(first) as one, TestClient(second) as two:
        assert [login(one, email, "guess").status_code for _ in range(2)] == [401, 401]
        assert login(two, email, "guess").status_code == 401
        assert_throttled(login(two, email, "guess"))
        assert_throttled(login(one, email, "guess"))
    # Redis holds digests, never the address or the e-mail.
    stored = b" ".join(shared_redis.stored())
    assert stored and email.encode() not in stored and b"testclient" not in stored


def test_a_busy_password_check_is_503_and_does_not_count_as_a_failure(settings: Settings) -> None:
    app = create_app(limited(settings, login_failures_per_account=1, password_hash_wait_seconds=0.2))
    security.limit_password_work(1, 0.2)
    email = new_account(app)
    with TestClient(app) as client:
        with security.password_slot():
            busy = login(client, email, "guess")
        assert busy.status_code == 503
        assert busy.json() == {"detail": security.PasswordWorkBusy.message}
        assert int(busy.headers["retry-after"]) >= 1
        # The refused attempt was given back: the one failure the window allows is still there.
        assert login(client, email, "guess").status_code == 401
        assert_throttled(login(client, email, "guess"))


def peak_rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


def current_rss_mib() -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())
    assert match is not None
    return int(match.group(1)) / 1024


def test_argon2_work_is_bounded_per_process(settings: Settings) -> None:
    """Eight logins at once with one argon2 slot: the process's peak memory grows by one verification's 64 MiB,
    not eight (VmHWM, reset through /proc/self/clear_refs before the burst)."""
    app = create_app(limited(settings, password_hash_concurrency=1, password_hash_wait_seconds=60))
    email = new_account(app)
    logins = 8
    with TestClient(app) as client:
        assert login(client, email, PASSWORD).status_code == 200  # warm: imports, pools, the first session
        statuses: list[int] = []
        start = threading.Barrier(logins)

        def one() -> None:
            start.wait()
            statuses.append(login(client, email, PASSWORD).status_code)

        threads = [threading.Thread(target=one) for _ in range(logins)]
        baseline = current_rss_mib()
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        growth = peak_rss_mib() - baseline
    assert statuses == [200] * logins
    # One verification is 64 MiB; two at once would be 128. Unbounded, eight took about 500 MiB here.
    assert growth < 110, f"peak grew by {growth:.0f} MiB"


# The supplier API -----------------------------------------------------------------------------------------------


def random_keys(supply: Supply, client: TestClient, count: int) -> None:
    for _ in range(count):
        key = f"R4I_TEST_{secrets.token_urlsafe(24)}"
        response = client.post("/sandbox/v1/get_industries", json={}, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401, response.text
    assert client.post("/sandbox/v1/get_industries", json={}).status_code == 401


@pytest.fixture
def supply(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Supply:
    return Supply(client, admin, make_survey, {"USA": 10})


def test_invalid_supplier_keys_leave_no_limiter_state_in_memory(supply: Supply, settings: Settings) -> None:
    app = create_app(settings)
    limits: RateLimits = app.state.rate_limits
    with TestClient(app) as client:
        random_keys(supply, client, 1000)
        assert limits.memory.windows.size() == 0
        headers = {"Authorization": f"Bearer {supply.keys['sandbox']}"}
        assert client.post("/sandbox/v1/get_industries", json={}, headers=headers).status_code == 200
        assert limits.memory.windows.size() == 1


def test_invalid_supplier_keys_leave_no_keys_in_redis(
    supply: Supply, settings: Settings, shared_redis: SharedRedis
) -> None:
    with TestClient(create_app(with_redis(settings, shared_redis))) as client:
        random_keys(supply, client, 1000)
        assert shared_redis.stored() == []
        headers = {"Authorization": f"Bearer {supply.keys['sandbox']}"}
        assert client.post("/sandbox/v1/get_industries", json={}, headers=headers).status_code == 200
        assert len(shared_redis.stored()) == 1


async def burst(apps: list[FastAPI], calls: int, path: str, **request: Any) -> list[int]:
    """``calls`` requests at once, spread over ``apps`` in turn; their statuses."""
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") for app in apps]
    try:
        responses = await asyncio.gather(*(clients[i % len(apps)].post(path, **request) for i in range(calls)))
    finally:
        for client in clients:
            await client.aclose()
    return [r.status_code for r in responses]


def test_supplier_limit_is_exact_across_two_instances_sharing_redis(
    supply: Supply, settings: Settings, shared_redis: SharedRedis
) -> None:
    apps = [create_app(with_redis(settings, shared_redis, supplier_requests_per_minute=7)) for _ in range(2)]
    headers = {"Authorization": f"Bearer {supply.keys['sandbox']}"}
    statuses = asyncio.run(burst(apps, 30, "/sandbox/v1/get_industries", json={}, headers=headers))
    assert sorted(statuses) == [200] * 7 + [429] * 23
    for app in apps:
        app.state.database.dispose()


def test_without_redis_each_instance_counts_its_own(supply: Supply, settings: Settings) -> None:
    apps = [create_app(limited(settings, supplier_requests_per_minute=7)) for _ in range(2)]
    headers = {"Authorization": f"Bearer {supply.keys['sandbox']}"}
    statuses = asyncio.run(burst(apps, 30, "/sandbox/v1/get_industries", json={}, headers=headers))
    assert sorted(statuses) == [200] * 14 + [429] * 16
    for app in apps:
        app.state.database.dispose()


def test_an_idempotent_replay_is_answered_before_the_limit_counts(supply: Supply, settings: Settings) -> None:
    with TestClient(create_app(limited(settings, supplier_requests_per_minute=1))) as client:
        headers = {"Authorization": f"Bearer {supply.keys['sandbox']}", "Idempotency-Key": "add-p1"}
        body = {"supplier_id": supply.sid, "pid": "P1", "country": "USA"}
        first = client.post("/sandbox/v1/add_participant", json=body, headers=headers)
        assert first.status_code == 200, first.text
        again = client.post("/sandbox/v1/add_participant", json=body, headers=headers)
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        fresh = client.post("/sandbox/v1/add_participant", json=body, headers={**headers, "Idempotency-Key": "p2"})
        assert fresh.status_code == 429 and int(fresh.headers["retry-after"]) >= 1


def test_when_redis_is_down_limits_are_counted_per_process_with_one_warning(
    supply: Supply, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    down = limited(settings, redis_url="redis://127.0.0.1:1/0", supplier_requests_per_minute=3)
    headers = {"Authorization": f"Bearer {supply.keys['sandbox']}"}
    with caplog.at_level(logging.WARNING, logger="invitelink.rate_limits"), TestClient(create_app(down)) as client:
        codes = [client.post("/sandbox/v1/get_industries", json={}, headers=headers).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    warnings = [r for r in caplog.records if r.name == "invitelink.rate_limits"]
    assert len(warnings) == 1 and "ConnectionError" in warnings[0].getMessage()
    assert "127.0.0.1:1" not in warnings[0].getMessage()


# send_mail --------------------------------------------------------------------------------------------------------


@pytest.fixture
def sosci(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Sosci:
    return Sosci(client, admin, make_survey, project="flood-study")


def call(client: TestClient, sosci: Sosci, function: str, **params: str) -> httpx.Response:
    url = sosci.urls[function].removeprefix("http://testserver")
    response: httpx.Response = client.post(url, data=params)
    return response


def test_send_mail_flood_limit_per_key_leaves_create_link_alone(sosci: Sosci, settings: Settings) -> None:
    strict = limited(settings, sosci_send_mail_per_minute=3, sosci_send_mail_per_hour=100)
    with TestClient(create_app(strict)) as client:
        # Calls refused anyway (no identification) are not counted.
        assert call(client, sosci, "send_mail").status_code == 400
        codes = [call(client, sosci, "send_mail", email=f"p{n}@example.org").status_code for n in range(3)]
        assert codes == [200, 200, 200]
        refused = call(client, sosci, "send_mail", email="p9@example.org")
        assert refused.status_code == 429
        assert refused.json()["result"] == "error" and refused.json()["url"] is None
        assert refused.json()["error"].startswith("flood protection")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert call(client, sosci, "address_status", email="p9@example.org").status_code == 404  # nothing queued
        links = [call(client, sosci, "create_link", email=f"c{n}@example.org").status_code for n in range(10)]
        assert links == [200] * 10


def test_send_mail_hour_limit_and_no_minute_slot_lost(sosci: Sosci, settings: Settings) -> None:
    strict = limited(settings, sosci_send_mail_per_minute=3, sosci_send_mail_per_hour=2)
    app = create_app(strict)
    with TestClient(app) as client:
        codes = [call(client, sosci, "send_mail", email=f"p{n}@example.org").status_code for n in range(4)]
        assert codes == [200, 200, 429, 429]
        refused = call(client, sosci, "send_mail", email="p9@example.org")
        assert "2 per hour" in refused.json()["error"]
        assert int(refused.headers["retry-after"]) > 60
    # The calls the hour refused gave their minute slots back: two entries in the minute's window, not five.
    minute_windows = app.state.rate_limits.memory.windows._windows[60]
    assert [len(times) for key, times in minute_windows.items() if key.startswith("send-mail-minute/")] == [2]


def test_send_mail_flood_limit_holds_across_instances_with_redis(
    sosci: Sosci, settings: Settings, shared_redis: SharedRedis
) -> None:
    apps = [create_app(with_redis(settings, shared_redis, sosci_send_mail_per_minute=5)) for _ in range(2)]
    path = sosci.urls["send_mail"].removeprefix("http://testserver")

    async def calls() -> list[int]:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://testserver") for a in apps]
        try:
            responses = await asyncio.gather(
                *(clients[i % 2].post(path, data={"email": f"r{i}@example.org"}) for i in range(12))
            )
        finally:
            for client in clients:
                await client.aclose()
        return [r.status_code for r in responses]

    assert sorted(asyncio.run(calls())) == [200] * 5 + [429] * 7
    for app in apps:
        app.state.database.dispose()


# The memory storage -----------------------------------------------------------------------------------------------


def test_memory_windows_forget_expired_keys_without_a_sweep() -> None:
    async def scenario() -> None:
        windows = MemoryWindows(max_keys=10)
        for n in range(50):
            assert await windows.acquire_entry(f"k{n}", 2, 60)
        assert windows.size() <= 11  # bounded: the least recently used are dropped
        short = MemoryWindows()
        for n in range(100):
            await short.acquire_entry(f"k{n}", 1, 1)
        assert short.size() == 100
        await asyncio.sleep(1.1)
        assert await short.acquire_entry("new", 1, 1)
        assert short.size() == 1  # the expired ones went at the next call, with no timer or sweep task

    asyncio.run(scenario())


def test_moving_window_is_exact_and_reports_when_a_slot_frees(settings: Settings) -> None:
    async def scenario() -> None:
        limits = RateLimits(settings)
        rule = Rule("t", 3, 2, "slow down")
        for _ in range(3):
            await limits.hit(rule, "a")
        with pytest.raises(RateLimited) as refused:
            await limits.hit(rule, "a")
        assert refused.value.retry_after in (1, 2)
        await limits.hit(rule, "b")  # another identity has its own window
        await limits.give_back(rule, "a")
        await limits.hit(rule, "a")
        with pytest.raises(RateLimited):
            await limits.hit(rule, "a")
        await asyncio.sleep(2.05)
        await limits.hit(rule, "a")

    asyncio.run(scenario())


def test_moving_window_in_redis_is_exact_under_concurrency(settings: Settings, shared_redis: SharedRedis) -> None:
    async def scenario() -> None:
        limits = [RateLimits(with_redis(settings, shared_redis)) for _ in range(3)]
        rule = Rule("race", 25, 60, "slow down")

        async def one(n: int) -> bool:
            try:
                await limits[n % 3].hit(rule, "same")
            except RateLimited:
                return False
            return True

        accepted = await asyncio.gather(*(one(n) for n in range(200)))
        assert sum(accepted) == 25
        for each in limits:
            await each.aclose()

    asyncio.run(scenario())
