"""Every Redis key caseline uses, built in one place.

Nothing else spells a key: a module that needs one calls a function here, so
the whole keyspace can be read (and renamed) on one page.
"""

PREFIX = "cl"


def advisor(advisor_id: str) -> str:
    """Hash: an advisor's directory facts (name, phone, teams) and presence
    (status, since, call: a CallSid, hold: ringing/talking/wrapup, lease)."""
    return f"{PREFIX}:advisor:{advisor_id}"


def advisors() -> str:
    """Set: ids of every advisor in the directory."""
    return f"{PREFIX}:advisors"


def team_available(team: str) -> str:
    """Sorted set: available advisors of a team scored by idle-since (ms)."""
    return f"{PREFIX}:team:{team}:available"


def team_waiting(team: str) -> str:
    """Sorted set: callers waiting for a team, scored by priority band then
    arrival (ms)."""
    return f"{PREFIX}:team:{team}:waiting"


def teams() -> str:
    """Set: every team name any advisor belongs to or any caller waited for."""
    return f"{PREFIX}:teams"


def leases() -> str:
    """Sorted set: advisors held busy, scored by when the hold expires (ms)."""
    return f"{PREFIX}:leases"


def contact_by_phone(phone_e164: str) -> str:
    """Hash: the authorized contact owning a phone number."""
    return f"{PREFIX}:contact:phone:{phone_e164}"


def contact(contact_id: str) -> str:
    """Hash: an authorized contact by id (name, district, phone; never the PIN's hash)."""
    return f"{PREFIX}:contact:{contact_id}"


def district(district_id: str) -> str:
    """Hash: a district's name and whether it is hosted."""
    return f"{PREFIX}:district:{district_id}"


def case(number: str) -> str:
    """Hash: the routing facts of a case (district, owner, team, status,
    priority)."""
    return f"{PREFIX}:case:{number}"


def directory_loaded() -> str:
    """String: set once the directory cache has been written to Redis."""
    return f"{PREFIX}:directory:loaded"


def call(call_sid: str) -> str:
    """Hash: a call's session (caller, menu path, case, advisors, times)."""
    return f"{PREFIX}:call:{call_sid}"


def call_tried(call_sid: str) -> str:
    """Sorted set: advisors already rung on a call, scored by when (ms)."""
    return f"{PREFIX}:call:{call_sid}:tried"


def call_ended(call_sid: str) -> str:
    """String: set by the first status callback that ends a call."""
    return f"{PREFIX}:call:{call_sid}:ended"


def number_place(phone: str) -> str:
    """String: the CallSid of the call that holds the one waiting place a number may
    hold (an unverified caller's, on the outage line); it counts only while that call
    still waits (`routing.presence`), so a stale one frees itself."""
    return f"{PREFIX}:place:number:{phone}"


def open_calls() -> str:
    """Sorted set: the calls opened and not yet ended (CallSid), scored by when (ms since
    the epoch, UTC) the reconciler next asks Twilio whether each is over."""
    return f"{PREFIX}:calls:open"


def twilio_reads_paused() -> str:
    """String: until when (ms since the epoch) the reconciler asks Twilio about no call,
    after Twilio failed (429, 5xx, no answer); it expires then."""
    return f"{PREFIX}:twilio:reads-paused"


def calls_from(caller: str) -> str:
    """Sorted set: the calls the line took from a number (the `caller` of the call's
    hash: E.164, or what Twilio posted for a withheld one) in the last rolling window,
    CallSids scored by when each opened (ms)."""
    return f"{PREFIX}:number:{caller}:calls"


def verify_failures(phone_e164: str) -> str:
    """Sorted set: failed contact-ID/PIN verifications from a number, scored by
    when (ms). (Until the per-contact lockout it was a string at `verify:fail:`.)"""
    return f"{PREFIX}:verify:number:{phone_e164}:failures"


def verify_lock(phone_e164: str) -> str:
    """String: until when (ms) a number is locked out of verification."""
    return f"{PREFIX}:verify:number:{phone_e164}:lock"


def verify_pending(phone_e164: str) -> str:
    """Sorted set: a number's PIN attempts still being checked, scored by when (ms) each
    frees its place by itself if its check never settles (a crashed web process)."""
    return f"{PREFIX}:verify:number:{phone_e164}:pending"


def pin_failures(contact_id: str) -> str:
    """Sorted set: failed PINs for a contact ID from any number, scored by when (ms)."""
    return f"{PREFIX}:verify:contact:{contact_id}:failures"


def pin_lock(contact_id: str) -> str:
    """String: until when (ms) a contact's PIN is locked (until an operator unlocks it)."""
    return f"{PREFIX}:verify:contact:{contact_id}:lock"


def pin_pending(contact_id: str) -> str:
    """Sorted set: a contact ID's PIN attempts still being checked, as `verify_pending`."""
    return f"{PREFIX}:verify:contact:{contact_id}:pending"


def verify_failures_recent() -> str:
    """Sorted set: every failed verification of the last hour on the line, scored
    by when (ms), for the stats."""
    return f"{PREFIX}:verify:recent"


def announcement() -> str:
    """Hash: the known-incident announcement (text, active)."""
    return f"{PREFIX}:announcement"


def team_waits(team: str) -> str:
    """List: recent queue waits of a team (seconds), for wait estimates."""
    return f"{PREFIX}:team:{team}:waits"


def twilio_queues_sized() -> str:
    """Hash: team -> when (ms) its Twilio queue was last seen holding the desk's size
    (`routing.twilio_queues`); a team missing or seen over an hour ago is checked again."""
    return f"{PREFIX}:twilio-queues-sized"


def team_working(team: str) -> str:
    """String: how many of a team's advisors are working (a short-lived cache)."""
    return f"{PREFIX}:team:{team}:working"


def webhook_reply(idempotency_token: str) -> str:
    """String: the reply given to a webhook request, by Twilio's
    I-Twilio-Idempotency-Token ("pending" while the first request runs)."""
    return f"{PREFIX}:reply:{idempotency_token}"


def survey_overall(day: str) -> str:
    """Hash {CallSid: "<answer> <advisor> <team>"}: the "overall" survey answers of the
    surveys offered on a day (ISO date, Central), one field per call (a call's answer
    counts once, whoever writes it: the survey as it is answered, or the call logs read
    back). A cache of the call logs, read back when `survey_overall_read` is missing."""
    return f"{PREFIX}:survey:overall:{day}"


def survey_overall_read(day: str) -> str:
    """String (Unix ms): when the call logs' "overall" answers of a day (ISO date,
    Central) were last put into `survey_overall`; missing, the day is read back."""
    return f"{PREFIX}:survey:overall-read:{day}"


def survey_hold(contact_id: str) -> str:
    """String: why a contact is not to be surveyed now: "opted-out" (no expiry) or
    "surveyed" (expires when their 30 days are over)."""
    return f"{PREFIX}:survey:hold:{contact_id}"


def colleague_adding(call_sid: str) -> str:
    """String (advisor id, 30 s): a colleague is being added to this call (one at a time)."""
    return f"{PREFIX}:colleague-adding:{call_sid}"


def callbacks_on(contact_id: str, day: str) -> str:
    """String counter: callbacks a contact asked for on a day (ISO date, Central)."""
    return f"{PREFIX}:callbacks:{contact_id}:{day}"


def posted_maintenance() -> str:
    """String: the posted maintenance windows as JSON (a cache of the database's
    `posted_maintenance` row; "null" while none was ever posted through the API)."""
    return f"{PREFIX}:maintenance:posted"


def jobs_retried(queue: str) -> str:
    """String (integer): how many times a job of `queue` was retried, ever (GET /metrics)."""
    return f"{PREFIX}:jobs:{queue}:retried"


def console_session(session_id: str) -> str:
    """A console sign-in: who (advisor id, role, the credentials' version it was made
    under) and the CSRF secret, by opaque id."""
    return f"{PREFIX}:console:session:{session_id}"


def console_credentials(advisor_id: str) -> str:
    """String (integer, no expiry): how many times an advisor's console password or
    role changed, or all their sessions were ended; a session made under another
    count is over (absent: 0)."""
    return f"{PREFIX}:console:credentials:{advisor_id}"


def sign_in_failures(advisor_id: str) -> str:
    """Console sign-ins of one account id in the current window, failed or still being
    checked (a counter: each attempt counts before its password is checked)."""
    return f"{PREFIX}:console:signin:failures:{advisor_id}"


def sign_in_lock(advisor_id: str) -> str:
    """Present while an account id is locked out of the console."""
    return f"{PREFIX}:console:signin:lock:{advisor_id}"


def desk_changes() -> str:
    """The pub/sub channel on which presence and queue changes are announced."""
    return f"{PREFIX}:desk:changes"


def replication_mark() -> str:
    """String: written just before Redis's WAIT, on the waiting connection (its value
    means nothing; `directory.redis_client.wait_for_replicas`)."""
    return f"{PREFIX}:replication:mark"


def oncall_line() -> str:
    """String: the CallSid the on-call engineer's phone is ringing or talking for (one
    person, one call at a time); expires with the talk lease if nothing frees it."""
    return f"{PREFIX}:oncall:line"


def redis_run_id() -> str:
    """String: the `run_id` (INFO server) of the Redis server the reconciler last saw. A
    server restarted, restored from a snapshot or failed over to a replica has another
    one, and this key is either gone or (restored, replicated) holds the old one
    (`routing.redis_restarts`)."""
    return f"{PREFIX}:redis:run-id"


def advisors_to_confirm() -> str:
    """Set: ids of advisors a Redis restored from a snapshot brought back available and
    idle, held busy (`confirming` on their hash) until Twilio confirms they are on no
    live call (`routing.redis_restarts.confirm_restored_advisors`)."""
    return f"{PREFIX}:advisors:to-confirm"
