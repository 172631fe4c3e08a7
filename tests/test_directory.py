"""The directory: loading a document into the database, and the Redis cache of its facts."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from directory import (
    ALL_TEAMS,
    DirectoryError,
    advisor_facts,
    cache_directory,
    check_pin,
    contact_is_active,
    district_contacts,
    find_case,
    find_contact,
    find_contact_and_district_by_phone,
    find_contact_by_phone,
    find_district,
    hash_pin,
    keys,
    load_directory,
    normalize_phone,
    team_for_product,
    validate_document,
)
from directory.db import ensure_schema, make_engine, make_session_factory
from directory.models import CallLog, Case, Contact

# Loading, upserts and lookups read and write the database: on SQLite and on PostgreSQL.
pytestmark = pytest.mark.databases

DEMO = Path(__file__).resolve().parent.parent / "demo" / "directory.json"
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory on the fresh database."""
    return make_session_factory(engine)


@pytest.fixture
def demo() -> dict[str, Any]:
    """The demo directory document (a fresh copy each test)."""
    return json.loads(DEMO.read_text(encoding="utf-8"))


@pytest.fixture
def loaded(demo: dict[str, Any], sessions: sessionmaker[Session], r: redis.Redis) -> dict:
    """The demo directory loaded into the database and Redis."""
    load_directory(demo, sessions, r, NOW)
    return demo


def dump_rows(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order."""
    with engine.connect() as conn:
        return {
            table: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{table}"'))), key=repr)
            for table in inspect(conn).get_table_names()
        }


def dump_redis(r: redis.Redis) -> dict[str, Any]:
    """Every key of the test Redis with its value."""
    out: dict[str, Any] = {}
    for key in r.scan_iter():
        kind = r.type(key)
        out[key] = r.hgetall(key) if kind == "hash" else (
            sorted(r.smembers(key)) if kind == "set" else r.dump(key)
        )
    return out


# --- loading --------------------------------------------------------------------


def test_loading_the_demo_fills_the_database_and_the_cache(
    demo: dict, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    counts = load_directory(demo, sessions, r, NOW)

    assert counts == {"districts": 6, "contacts": 15, "advisors": 10, "cases": 40}
    assert r.get(keys.directory_loaded()) == "1"
    assert r.hgetall(keys.case("2024117")) == {
        "number": "2024117",
        "district": "D100",
        "owner": "A7",
        "team": "general",
        "status": "open",
        "priority": "medium",
        "product": "campus",
    }
    assert r.hgetall(keys.case("2024119"))["owner"] == ""
    assert r.hget(keys.case("2024102"), "team") == "food-service"
    pat = r.hgetall(keys.contact_by_phone("+16125550101"))
    assert (pat["id"], pat["name"], pat["district"], pat["phone"]) == (
        "5001", "Pat Lee", "D100", "+16125550101"
    )
    assert pat["last_active"] == "2026-10-01" and pat["deactivated"] == "0"
    assert r.hgetall(keys.contact("5001")) == pat
    assert r.hgetall(keys.district("D100")) == {
        "id": "D100", "name": "Lakeview Public Schools", "hosted": "1"
    }
    assert r.hget(keys.district("D300"), "hosted") == "0"
    jordan = r.hgetall(keys.advisor("A7"))
    assert jordan["name"] == "Jordan Smith"
    assert jordan["phone"] == "+16515550199"
    assert jordan["teams"] == "general,hosting,food-service"
    assert jordan["status"] == "offline"
    assert r.smembers(keys.advisors()) == {f"A{i}" for i in range(1, 11)}
    # Every team has somebody to answer it.
    covered = {t for a in demo["advisors"] for t in a["teams"]}
    assert covered == set(ALL_TEAMS)
    with sessions() as db:
        assert len(db.scalars(select(Case)).all()) == 40


def test_phones_are_stored_in_e164(loaded: dict, sessions: sessionmaker[Session]) -> None:
    with sessions() as db:
        phones = {c.id: c.phone for c in db.scalars(select(Contact))}
    assert phones["5001"] == "+16125550101"
    assert phones["5005"] == "+17635550112"
    assert phones["5007"] == "+19525550122"
    assert all(p.startswith("+1") and len(p) == 12 for p in phones.values())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(612) 555-0101", "+16125550101"),
        ("+1 651 555 0199", "+16515550199"),
        ("952.555.0122", "+19525550122"),
        ("+44 20 7946 0958", "+442079460958"),
        ("12", None),
        ("555-0101", None),  # no area code: not a dialable number (a bad record)
        ("(123) 555-0101", None),  # no such area code
        ("call me", None),
        ("", None),
    ],
)
def test_normalize_phone(raw: str, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    ("product", "team"),
    [
        ("campus", "general"),
        ("Campus", "general"),
        ("food-service", "food-service"),
        ("Food Service", "food-service"),
        ("Online Payments", "online-payments"),
        ("FRAM", "fram"),
        ("School Store", "school-store"),
        ("Activity Registration", "activity-registration"),
        ("Fees", "fees"),
        ("Finance", "finance"),
        ("hosting", "hosting"),
        ("payroll", None),
        ("", None),
    ],
)
def test_team_for_product(product: str, team: str | None) -> None:
    assert team_for_product(product) == team


def test_pins_are_never_stored_in_clear(
    loaded: dict, engine: Engine, r: redis.Redis
) -> None:
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT pin_hash FROM contacts WHERE id = '5001'")).scalar_one()
        everything = repr(dump_rows(engine))
    assert stored.startswith("scrypt$") and "2468" not in stored
    assert '"2468"' not in everything and "'2468'" not in everything
    cached = r.hgetall(keys.contact("5001"))
    assert "2468" not in cached.values() and "pin" not in cached
    assert "pin_hash" not in cached and stored not in cached.values()
    assert check_pin("2468", stored)
    assert not check_pin("2469", stored)
    assert not check_pin("2468", "not-a-hash")


def test_the_same_pin_hashes_differently_each_time() -> None:
    first, second = hash_pin("2468"), hash_pin("2468")
    assert first != second
    assert check_pin("2468", first) and check_pin("2468", second)


def test_a_bad_document_names_every_bad_record_and_changes_nothing(
    loaded: dict, engine: Engine, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    before_rows, before_cache = dump_rows(engine), dump_redis(r)
    bad = copy.deepcopy(loaded)
    bad["cases"][16]["owner"] = "A1"  # a good change that must not be applied
    bad["districts"].append({"id": "D100", "name": "Lakeview again", "hosted": True})
    bad["contacts"][2]["phone"] = "12"
    bad["contacts"].append({"id": "5099", "name": "New Person", "district": "D100",
                            "phone": "(612) 555-0199"})  # new, no PIN
    bad["contacts"].append({"id": "5098", "name": "Copy Cat", "district": "D200",
                            "phone": "(612) 555-0101", "pin": "12"})
    bad["advisors"][0]["teams"] = ["general", "payroll"]
    bad["advisors"][1]["teams"] = []
    bad["cases"][4]["district"] = "D999"
    bad["cases"][5]["owner"] = "A99"
    bad["cases"][6]["status"] = "forgotten"
    bad["cases"][7]["number"] = "20X4108"
    bad["cases"][8]["product"] = "payroll"
    bad["cases"][9]["priority"] = "urgent"
    bad["contacts"][3]["last_active"] = "last tuesday"
    bad["contacts"][4]["id"] = "CN-5005"  # a caller cannot key this in
    bad["vendors"] = []

    with pytest.raises(DirectoryError) as error:
        load_directory(bad, sessions, r, NOW)

    problems = error.value.problems
    assert 'contacts[2] (id 5003): phone "12" is not a phone number' in problems
    assert 'cases[4] (number 2024105): district "D999" does not exist' in problems
    expected_mentions = [
        "districts[6] (id D100)",
        "contacts[15] (id 5099)",
        "contacts[16] (id 5098)",
        "advisors[0] (id A1)",
        "advisors[1] (id A2)",
        "cases[5] (number 2024106)",
        "cases[6] (number 2024107)",
        "cases[7] (number 20X4108)",
        "cases[8] (number 2024109)",
        "cases[9] (number 2024110)",
        "contacts[3] (id 5004)",
        "contacts[4] (id CN-5005)",
        '"vendors"',
    ]
    for mention in expected_mentions:
        assert any(mention in p for p in problems), (mention, problems)
    # The copy cat both reuses Pat's phone and has a short PIN.
    copy_cat = [p for p in problems if p.startswith("contacts[16]")]
    assert len(copy_cat) == 2
    assert dump_rows(engine) == before_rows
    assert dump_redis(r) == before_cache


def test_text_with_a_nul_is_a_bad_record_named_on_either_database(
    loaded: dict, engine: Engine, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    """PostgreSQL cannot store a NUL: named as a bad record, not a database error."""
    before = dump_rows(engine)
    bad = {"contacts": [dict(loaded["contacts"][0], name="Pat\x00Lee")],
           "advisors": [dict(loaded["advisors"][0], teams=["general\x00"])]}
    with pytest.raises(DirectoryError) as error:
        load_directory(bad, sessions, r, NOW)
    assert error.value.problems == [
        'contacts[0] (id 5001): "name" contains a control character (U+0000)',
        'advisors[0] (id A1): "teams" contains a control character (U+0000)',
        'advisors[0] (id A1): team "general\x00" is not one of ' + ", ".join(ALL_TEAMS),
    ]
    assert dump_rows(engine) == before


def test_a_misspelt_field_is_named_in_a_warning_and_the_record_still_loads(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pat = dict(loaded["contacts"][0], deactivate=True)
    load_directory({"contacts": [pat]}, sessions, r, NOW)
    assert any("contacts[0] (id 5001): unknown field 'deactivate' ignored" in m
               for m in caplog.messages), caplog.messages
    with sessions() as db:
        assert db.get(Contact, "5001").deactivated is False


def test_a_reload_sets_the_loaded_date_and_a_verified_call_still_counts(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The operators' `last_active` is theirs to move, forward or back; a verified call's
    date is kept apart, so a reload never undoes it; what the 180-day rule counts from
    (and the cache holds) is the later of the two. A date past tomorrow (Central) loads
    with a warning."""
    from directory.activity import touch_contacts

    pat = loaded["contacts"][0]

    def dates() -> tuple[date | None, date | None, date | None]:
        with sessions() as db:
            row = db.get(Contact, "5001")
            return row.last_active, row.last_verified_call, row.last_activity

    with sessions() as db, db.begin():
        touch_contacts(db, ["5001"], date(2026, 11, 20))  # what a verified call's log does
    load_directory({"contacts": [dict(pat, last_active="2026-01-05")]}, sessions, r, NOW)
    assert dates() == (date(2026, 1, 5), date(2026, 11, 20), date(2026, 11, 20))
    assert find_contact_by_phone(r, sessions, "+16125550101")["last_active"] == "2026-11-20"
    load_directory({"contacts": [dict(pat, last_active="2026-11-22")]}, sessions, r, NOW)
    assert dates() == (date(2026, 11, 22), date(2026, 11, 20), date(2026, 11, 22))
    assert not any("in the future" in m for m in caplog.messages)
    load_directory({"contacts": [dict(pat, last_active="2026-11-24")]}, sessions, r, NOW)
    assert not any("in the future" in m for m in caplog.messages)  # tomorrow: a clock apart
    load_directory({"contacts": [dict(pat, last_active="2062-11-20")]}, sessions, r, NOW)
    assert any('contacts[0] (id 5001): last_active "2062-11-20" is in the future' in m
               for m in caplog.messages), caplog.messages
    load_directory({"contacts": [dict(pat, last_active="2026-11-22")]}, sessions, r, NOW)
    assert dates()[0] == date(2026, 11, 22)  # a mistyped year is put right by a reload


def test_tabs_and_line_ends_in_cells_load_as_before(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis,
) -> None:
    """A spreadsheet's export leaves tabs and line ends in cells: stripped around values,
    and harmless inside them; a field the format does not have is never refused."""
    district = dict(loaded["districts"][0], name="Lakeview Public Schools\n")
    pat = dict(loaded["contacts"][0], phone="(612) 555-0101\n", name="Pat\tLee",
               notes="Prefers email.\nCall after 3pm.\x00")
    case = dict(loaded["cases"][16], status="open\t", product="Food\tService")
    load_directory({"districts": [district], "contacts": [pat], "cases": [case]},
                   sessions, r, NOW)
    assert find_contact_by_phone(r, sessions, "+16125550101")["id"] == "5001"


def test_a_case_number_of_thousands_of_digits_is_named_not_a_crash(
    sessions: sessionmaker[Session],
) -> None:
    number = "9" * 5000
    with sessions() as db:
        problems = validate_document({"cases": [{"number": number, "district": "D100",
                                                 "status": "open", "priority": "low",
                                                 "product": "campus"}]}, db)
    assert any("is too large" in p for p in problems), problems


def test_validate_reads_references_from_the_database(
    loaded: dict, sessions: sessionmaker[Session]
) -> None:
    later = {"cases": [{"number": "2025001", "district": "D100", "owner": "A7",
                        "status": "new", "priority": "high", "product": "Food Service"}],
             "contacts": [{"id": "5001", "name": "Pat Lee", "district": "D100",
                           "phone": "(612) 555-0101"}]}
    with sessions() as db:
        assert validate_document(later, db) == []
        assert validate_document([], db) == ["the directory document must be a JSON object"]


def test_reloading_upserts(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    assert find_case(r, sessions, "2024117")["owner"] == "A7"
    with sessions() as db:
        old_hash = db.get(Contact, "5001").pin_hash
    changed = {
        "cases": [dict(loaded["cases"][16], owner="A1", priority="high")],
        # Pat's PIN omitted: kept. Pat's phone changed: the old phone no longer finds Pat.
        "contacts": [{"id": "5001", "name": "Pat Lee", "district": "D100",
                      "phone": "(612) 555-0109"}],
    }

    assert load_directory(changed, sessions, r, NOW) == {
        "districts": 0, "contacts": 1, "advisors": 0, "cases": 1
    }

    case = find_case(r, sessions, "2024117")
    assert (case["owner"], case["priority"]) == ("A1", "high")
    assert find_contact_by_phone(r, sessions, "+16125550101") is None
    assert find_contact_by_phone(r, sessions, "+16125550109")["id"] == "5001"
    with sessions() as db:
        assert db.get(Contact, "5001").pin_hash == old_hash
        assert len(db.scalars(select(Case)).all()) == 40


def test_reloading_the_same_file_changes_no_row(
    loaded: dict, engine: Engine, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    before = dump_rows(engine)
    load_directory(loaded, sessions, r, NOW)
    assert dump_rows(engine) == before


def test_two_contacts_may_swap_phones_in_one_load(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    pat, morgan = dict(loaded["contacts"][0]), dict(loaded["contacts"][1])
    pat["phone"], morgan["phone"] = morgan["phone"], pat["phone"]

    load_directory({"contacts": [pat, morgan]}, sessions, r, NOW)

    assert find_contact_by_phone(r, sessions, "+16125550101")["id"] == "5002"
    assert find_contact_by_phone(r, sessions, "+16125550102")["id"] == "5001"


def test_advisor_presence_survives_a_reload(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    r.hset(keys.advisor("A7"), mapping={"status": "available", "since": "1700000000000"})
    loaded["advisors"][6]["name"] = "Jordan Smith-Ortiz"

    load_directory(loaded, sessions, r, NOW)

    jordan = r.hgetall(keys.advisor("A7"))
    assert jordan["status"] == "available"
    assert jordan["since"] == "1700000000000"
    assert jordan["name"] == "Jordan Smith-Ortiz"
    assert advisor_facts(r, sessions, "A7")["phone"] == "+16515550199"


# --- the cache --------------------------------------------------------------------


def test_a_cache_miss_is_read_from_the_database_and_repopulated(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    expected = r.hgetall(keys.case("2024117"))
    r.delete(keys.case("2024117"), keys.contact_by_phone("+16125550101"), keys.district("D100"))

    assert find_case(r, None, "2024117") is None  # Redis only: a miss is a miss
    assert find_case(r, sessions, "2024117") == expected
    assert r.hgetall(keys.case("2024117")) == expected
    assert r.ttl(keys.case("2024117")) == -1
    assert find_contact_by_phone(r, sessions, "+16125550101")["id"] == "5001"
    assert r.exists(keys.contact_by_phone("+16125550101"))
    assert find_district(r, sessions, "D100")["hosted"] == "1"
    assert find_contact(r, None, "5002")["name"] == "Morgan Diaz"


def test_a_callers_contact_and_district_are_read_together_whatever_the_cache_holds(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    pat, lakeview = "+16125550101", keys.district("D100")
    both = find_contact_and_district_by_phone(r, sessions, pat)
    assert (both[0]["id"], both[1]["name"], both[1]["hosted"]) == (
        "5001", "Lakeview Public Schools", "1")
    # The district evicted: read from the database and cached again.
    r.delete(lakeview)
    assert find_contact_and_district_by_phone(r, sessions, pat) == both
    assert r.hgetall(lakeview) == both[1]
    # The contact evicted too.
    r.delete(keys.contact_by_phone(pat), lakeview)
    assert find_contact_and_district_by_phone(r, sessions, pat) == both
    # A number nobody owns, remembered as missing; a district the database lacks.
    assert find_contact_and_district_by_phone(r, sessions, "+16125559999") == (None, None)
    assert r.hget(keys.contact_by_phone("+16125559999"), "missing") == "1"
    assert find_contact_and_district_by_phone(r, sessions, "+16125559999") == (None, None)
    r.hset(keys.contact_by_phone(pat), "district", "D404")
    assert find_contact_and_district_by_phone(r, sessions, pat) == (
        {**both[0], "district": "D404"}, None)
    assert r.hget(keys.district("D404"), "missing") == "1"
    assert find_contact_and_district_by_phone(r, sessions, pat)[1] is None


def test_a_number_missing_from_the_database_is_remembered_briefly(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    assert find_case(r, sessions, "9999999") is None
    assert 0 < r.ttl(keys.case("9999999")) <= 60
    with sessions() as db, db.begin():
        db.add(Case(number="9999999", district_id="D100", status="new",
                    priority="low", product="campus"))

    # While the marker lives the database is not asked again...
    assert find_case(r, sessions, "9999999") is None
    # ...and loading the case replaces the marker with the real, lasting entry.
    load_directory({"cases": [{"number": "9999999", "district": "D100", "status": "new",
                               "priority": "low", "product": "campus"}]}, sessions, r, NOW)
    assert find_case(r, None, "9999999")["district"] == "D100"
    assert r.ttl(keys.case("9999999")) == -1


def test_cache_directory_rebuilds_a_flushed_redis(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    before = dump_redis(r)
    r.flushdb()
    cache_directory(sessions, r, NOW)
    assert dump_redis(r) == before


def test_advisor_facts_repopulates_only_directory_fields(
    loaded: dict, sessions: sessionmaker[Session], r: redis.Redis
) -> None:
    r.delete(keys.advisor("A3"))
    facts = advisor_facts(r, sessions, "A3", now=NOW)
    assert facts is not None
    assert (facts["name"], facts["teams"], facts["status"]) == (
        "Priya Raman", "general,online-payments,school-store", "offline"
    )
    assert advisor_facts(r, sessions, "A404") is None
    assert not r.exists(keys.advisor("A404"))


# --- authorized contacts ----------------------------------------------------------


@pytest.mark.parametrize(("days", "active"), [(0, True), (179, True), (180, False), (400, False)])
def test_contacts_idle_180_days_are_inactive(days: int, active: bool) -> None:
    last = (NOW - timedelta(days=days)).date().isoformat()
    assert contact_is_active({"deactivated": "0", "last_active": last}, NOW) is active


def test_the_180_days_count_central_dates_not_utc() -> None:
    # 23:30 in Chicago on Nov 24 is already Nov 25 in UTC.
    evening = datetime(2026, 11, 25, 5, 30, tzinfo=UTC)
    last = (date(2026, 11, 24) - timedelta(days=179)).isoformat()  # 179 Central days ago
    assert contact_is_active({"deactivated": "0", "last_active": last}, evening)


def test_deactivated_or_undated_contacts() -> None:
    assert contact_is_active({"deactivated": "0", "last_active": ""}, NOW)
    assert not contact_is_active({"deactivated": "1", "last_active": "2026-11-22"}, NOW)


def test_the_demo_has_an_inactive_contact(loaded: dict, sessions: sessionmaker[Session],
                                          r: redis.Redis) -> None:
    robin = find_contact(r, sessions, "5007")
    assert robin is not None and not contact_is_active(robin, NOW)
    assert contact_is_active(find_contact(r, sessions, "5001"), NOW)


def test_district_contacts_lists_names_of_active_contacts(
    loaded: dict, sessions: sessionmaker[Session]
) -> None:
    assert district_contacts(sessions, "D600") == [{"name": "Jesse Martinez"},
                                                   {"name": "Skyler Olson"}]
    assert district_contacts(sessions, "D300", NOW) == [{"name": "Jamie Park"}]


# --- the database -----------------------------------------------------------------


def test_a_sqlite_database_gets_its_folder_foreign_keys_and_wal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'dir' / 'caseline.db'}")
    ensure_schema(engine)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def test_one_call_log_per_call_sid(loaded: dict, sessions: sessionmaker[Session]) -> None:
    started = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    with sessions() as db, db.begin():
        db.add(CallLog(call_sid="CA1", caller="+16125550101", contact_id="5001",
                       district_id="D100", menu_path="1>2024117#", case_number="2024117",
                       advisors_tried=["A7"], answered_by="A7", status="answered",
                       started_at=started, ended_at=started + timedelta(minutes=3),
                       talk_seconds=170, queue_wait_seconds=4.5))
    with sessions() as db:
        log = db.scalars(select(CallLog)).one().to_dict()
    assert log["started_at"] == "2026-11-23T14:00:00+00:00"
    assert log["ended_at"] == "2026-11-23T14:03:00+00:00"
    assert (log["contact"], log["district"], log["advisors_tried"]) == ("5001", "D100", ["A7"])
    assert json.loads(json.dumps(log)) == log
    with pytest.raises(IntegrityError), sessions() as db, db.begin():
        db.add(CallLog(call_sid="CA1", caller="+16125550101", status="completed",
                       started_at=started))


def test_foreign_keys_are_enforced(engine: Engine, sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), sessions() as db, db.begin():
        db.add(Case(number="1", district_id="D404", status="new", priority="low",
                    product="campus"))


def test_lookups_work_on_a_client_without_decode_responses(
    loaded: dict, sessions: sessionmaker[Session], redis_url: str
) -> None:
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.delete(keys.case("2024117"))
        assert find_case(raw, sessions, "2024117")["owner"] == "A7"  # from the database
        assert find_case(raw, None, "2024117")["team"] == "general"  # from the cache
        assert advisor_facts(raw, None, "A7")["name"] == "Jordan Smith"
    finally:
        raw.close()
