"""The directory's Redis cache: the facts a call needs, written so webhooks
never query the database on the hot path.

* `keys.case(number)`: number, district, owner, team, status, priority, product
* `keys.contact_by_phone(e164)` and `keys.contact(id)`: id, name, district,
  phone, last_active, deactivated (never the PIN's hash: verification is rare
  and reads the database, `directory.pins.check_contact_pin`)
* `keys.district(id)`: id, name, hosted
* `keys.advisor(id)`: name, phone, teams (the presence fields, status, since,
  call, lease, belong to `routing.presence` and are never overwritten here)

An advisor's teams are written by `update_advisor_teams`, one script that
also moves an available advisor between their teams' available sets. That
script used to live in `routing.presence`, which made this adapter import the
layer above it. It lives here now because what it writes is a directory fact
(the teams field); it keeps presence intact by construction: it reads the
status and idle-since presence wrote and only re-files an available advisor
under the new teams, with the same idle-since, so no presence transition
happens here. The sets it touches are spelled by `directory.keys` like every
other key, and it runs through the one registry, `directory.scripts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from directory import keys
from directory.catalog import GENERAL, team_for_product
from directory.models import Advisor, Case, Contact, District
from directory.scripts import script

# Record an advisor's teams without touching their presence: an available
# advisor leaves the old teams' available sets and joins the new ones with the
# idle-since presence gave them; anyone else just gets the field.
# KEYS[1] the advisor's hash; ARGV[1] the key of a team's available set with
# "{}" for the team, [2] the advisor id, [3] the new teams, comma-separated.
_UPDATE_TEAMS = r"""
local function avail_key(team) return (string.gsub(ARGV[1], "{}",
    function() return team end, 1)) end
local function split(csv)
  local out = {}
  for part in string.gmatch(csv or "", "[^,]+") do table.insert(out, part) end
  return out
end
local key, id, teams = KEYS[1], ARGV[2], ARGV[3]
for _, team in ipairs(split(redis.call("HGET", key, "teams"))) do
  redis.call("ZREM", avail_key(team), id)
end
redis.call("HSET", key, "teams", teams)
redis.call("HSETNX", key, "status", "offline")
if redis.call("HGET", key, "status") == "available" then
  local since = redis.call("HGET", key, "since") or "0"
  for _, team in ipairs(split(teams)) do redis.call("ZADD", avail_key(team), since, id) end
end
return 1
"""


def case_facts(case: Case) -> dict[str, str]:
    """The routing facts of a case, as cached in Redis."""
    return {
        "number": case.number,
        # An outage case opened for an unknown caller has no district (yet).
        "district": case.district_id or "",
        "owner": case.owner_id or "",
        "team": team_for_product(case.product) or GENERAL,
        "status": case.status,
        "priority": case.priority,
        "product": case.product,
    }


# Contact fields an earlier release cached and this one must not leave behind.
RETIRED_CONTACT_FIELDS = ("pin_hash",)


def contact_facts(contact: Contact) -> dict[str, str]:
    """A contact's facts, as cached in Redis (nothing of the PIN, not even its hash)."""
    return {
        "id": contact.id,
        "name": contact.name,
        "district": contact.district_id,
        "phone": contact.phone,
        # What the 180-day rule counts from: the later of the date loaded and the last
        # verified call (`Contact.last_activity`).
        "last_active": contact.last_activity.isoformat() if contact.last_activity else "",
        "deactivated": "1" if contact.deactivated else "0",
    }


def district_facts(district: District) -> dict[str, str]:
    """A district's facts, as cached in Redis."""
    return {"id": district.id, "name": district.name, "hosted": "1" if district.hosted else "0"}


class Facts:
    """Directory facts to cache, copied out of ORM rows while their database session is open."""

    def __init__(self) -> None:
        self.districts: list[dict[str, str]] = []
        self.contacts: list[dict[str, str]] = []
        self.advisors: list[tuple[str, str, str, list[str]]] = []  # id, name, phone, teams
        self.cases: list[dict[str, str]] = []
        self.stale_phone_keys: list[str] = []

    @classmethod
    def of(
        cls,
        districts: Iterable[District] = (),
        contacts: Iterable[Contact] = (),
        advisors: Iterable[Advisor] = (),
        cases: Iterable[Case] = (),
    ) -> Facts:
        """Copy the facts of some rows."""
        facts = cls()
        facts.districts = [district_facts(d) for d in districts]
        facts.contacts = [contact_facts(c) for c in contacts]
        facts.advisors = [(a.id, a.name, a.phone, list(a.teams or [])) for a in advisors]
        facts.cases = [case_facts(c) for c in cases]
        return facts


def cacheable(facts: Mapping[str, Any]) -> dict[str, str]:
    """Facts as Redis hash fields: text only, a missing value as "".

    Whatever a call wrote into the database (a case without a district, a
    contact without a date) must never stop the cache from being rebuilt.
    """
    return {name: "" if value is None else str(value) for name, value in facts.items()}


def _put(pipe: Any, key: str, mapping: dict[str, str], drop: Iterable[str] = ()) -> None:
    """Write a cached entry, replacing any negative marker (and its expiry) and
    removing the `drop` fields."""
    pipe.hset(key, mapping=cacheable(mapping))
    pipe.hdel(key, "missing", *drop)
    pipe.persist(key)


def write_cache(
    redis_client: redis.Redis, facts: Facts, now: datetime, *, mark_loaded: bool = True
) -> None:
    """Write directory facts into the cache (then, by default, mark the directory loaded)."""
    pipe = redis_client.pipeline(transaction=False)
    # Old phone keys go first: a phone that moved to another contact is rewritten below.
    for key in facts.stale_phone_keys:
        pipe.delete(key)
    for district in facts.districts:
        _put(pipe, keys.district(district["id"]), district)
    for contact in facts.contacts:
        _put(pipe, keys.contact(contact["id"]), contact, RETIRED_CONTACT_FIELDS)
        _put(pipe, keys.contact_by_phone(contact["phone"]), contact, RETIRED_CONTACT_FIELDS)
    for case in facts.cases:
        _put(pipe, keys.case(case["number"]), case)
    for advisor_id, name, phone, _teams in facts.advisors:
        # Directory fields only: status, since, call and lease are presence's.
        pipe.hset(keys.advisor(advisor_id), mapping={"name": name, "phone": phone})
        pipe.hsetnx(keys.advisor(advisor_id), "status", "offline")
        pipe.sadd(keys.advisors(), advisor_id)
    pipe.execute()
    if facts.advisors:
        now_ms = int(now.timestamp() * 1000)
        for advisor_id, _name, _phone, teams in facts.advisors:
            update_advisor_teams(redis_client, advisor_id, teams, now_ms)
    if mark_loaded:
        redis_client.set(keys.directory_loaded(), "1")


def cache_directory(
    session_factory: sessionmaker[Session], redis_client: redis.Redis, now: datetime
) -> None:
    """Rewrite the whole directory cache from the database (service start, Redis restart)."""
    with session_factory() as db:
        facts = Facts.of(
            db.scalars(select(District)),
            db.scalars(select(Contact)),
            db.scalars(select(Advisor)),
            db.scalars(select(Case)),
        )
    current = {keys.contact_by_phone(c["phone"]) for c in facts.contacts}
    pattern = keys.contact_by_phone("*")
    facts.stale_phone_keys = [
        key
        for key in map(text_of, redis_client.scan_iter(match=pattern, count=1000))
        if key not in current
    ]
    write_cache(redis_client, facts, now)
    _drop_retired_contact_fields(redis_client)


def keys_of(facts: Facts) -> list[str]:
    """The cache's keys of the districts, contacts (by id and by phone, and the phones
    they no longer have) and cases of `facts`: what a change drops before its commit.
    Never an advisor's: their hash holds their presence too."""
    found = [keys.district(district["id"]) for district in facts.districts]
    found += [keys.case(case["number"]) for case in facts.cases]
    found += list(facts.stale_phone_keys)
    for contact in facts.contacts:
        found += [keys.contact(contact["id"]), keys.contact_by_phone(contact["phone"])]
    return found


def recache_if_lost(
    session_factory: sessionmaker[Session], redis_client: redis.Redis, now: datetime
) -> bool:
    """Rebuild the whole directory cache from the database (`cache_directory`) when Redis
    lost it (no `keys.directory_loaded` marker: flushed, or restarted without its data,
    under a running service); whether it did. One EXISTS when the cache is there.
    SQLAlchemy's errors when the database is down and the cache must be rebuilt."""
    if redis_client.exists(keys.directory_loaded()):
        return False
    cache_directory(session_factory, redis_client, now)
    return True


def _drop_retired_contact_fields(redis_client: redis.Redis) -> None:
    """Remove what an earlier release cached on any contact key (PIN hashes above all),
    including keys the rewrite above did not touch (a negative marker, say)."""
    pipe = redis_client.pipeline(transaction=False)
    # Every key under keys.contact("*") is a contact hash (by id or by phone).
    for key in redis_client.scan_iter(match=keys.contact("*"), count=1000):
        pipe.hdel(key, *RETIRED_CONTACT_FIELDS)
    pipe.execute()


def cache_case(redis_client: redis.Redis, case: Case) -> None:
    """Write one case's routing facts (after a worker opens or changes a case)."""
    pipe = redis_client.pipeline(transaction=False)
    _put(pipe, keys.case(case.number), case_facts(case))
    pipe.execute()


def cache_contact(redis_client: redis.Redis, facts: dict[str, str]) -> None:
    """Write one contact's facts under its id and its phone."""
    pipe = redis_client.pipeline(transaction=False)
    _put(pipe, keys.contact(facts["id"]), facts, RETIRED_CONTACT_FIELDS)
    _put(pipe, keys.contact_by_phone(facts["phone"]), facts, RETIRED_CONTACT_FIELDS)
    pipe.execute()



def text_of(value: Any) -> str:
    """A Redis reply as text, whether or not the client decodes responses."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def hash_of(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash reply as a dict of text."""
    return {text_of(k): text_of(v) for k, v in raw.items()}


def update_advisor_teams(r: redis.Redis, advisor_id: str, teams: list[str], now_ms: int) -> None:
    """Record an advisor's teams, keeping their presence (and availability) intact."""
    script(r, _UPDATE_TEAMS)(
        keys=[keys.advisor(advisor_id)],
        args=[keys.team_available("{}"), advisor_id, ",".join(teams)],
        client=r,
    )
    if teams:
        r.sadd(keys.teams(), *teams)
    r.sadd(keys.advisors(), advisor_id)
