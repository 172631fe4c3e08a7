"""The directory: districts, authorized contacts, advisors and cases, in the
database, with the Redis cache of the facts a call needs.

An adapter: it imports only `config` and libraries, never the desk's
decisions above it. Its rooms:

* `catalog`: teams and products (the one copy of "general", "hosting", option 6)
* `phones`, `pins`: how phone numbers and PINs are stored and checked
* `validation`, `loading`: an operator's JSON document, checked then upserted
* `records`: one case or contact at a time (the operators' API), with its audit
* `cache`, `lookups`: the Redis cache written from the database, and read on a call
* `activity`: the 180-day rule
* `models`, `db`, `call_logs`: the tables, the connection and schema, the call logs
* `migrations`: the schema's history (Alembic), run by `db.ensure_schema`
* `case_numbers`: numbers for the cases the line opens, never twice
* `pending_callbacks`: callbacks promised and not logged yet, which Redis may lose
* `accounts`: advisors' console passwords (Argon2id)
* `keys`, `scripts`: every Redis key, and the one Lua script registry

What callers use is importable from `directory` itself.
"""

from directory.activity import (
    INACTIVE_AFTER_DAYS,
    contact_is_active,
    district_contacts,
)
from directory.cache import (
    cache_case,
    cache_directory,
    recache_if_lost,
    update_advisor_teams,
)
from directory.call_logs import calls_on_case
from directory.catalog import (
    ALL_TEAMS,
    GENERAL,
    HOSTING,
    PRODUCT_TEAMS,
    canonical_product,
    team_for_product,
)
from directory.loading import load_directory
from directory.lookups import (
    advisor_facts,
    find_case,
    find_contact,
    find_contact_and_district_by_phone,
    find_contact_by_phone,
    find_district,
)
from directory.phones import normalize_phone
from directory.pins import (
    PinCheck,
    StoredPin,
    check_contact_pin,
    check_pin,
    check_stored_pin,
    hash_pin,
    stored_pin,
)
from directory.validation import CONTACT_ID_DIGITS, DirectoryError, validate_document

__all__ = [
    "ALL_TEAMS",
    "CONTACT_ID_DIGITS",
    "GENERAL",
    "HOSTING",
    "INACTIVE_AFTER_DAYS",
    "PRODUCT_TEAMS",
    "DirectoryError",
    "PinCheck",
    "StoredPin",
    "advisor_facts",
    "cache_case",
    "cache_directory",
    "recache_if_lost",
    "calls_on_case",
    "canonical_product",
    "check_contact_pin",
    "check_pin",
    "check_stored_pin",
    "contact_is_active",
    "district_contacts",
    "find_case",
    "find_contact",
    "find_contact_and_district_by_phone",
    "find_contact_by_phone",
    "find_district",
    "hash_pin",
    "load_directory",
    "normalize_phone",
    "stored_pin",
    "team_for_product",
    "update_advisor_teams",
    "validate_document",
]
