"""The on-call engineer's line (`CASELINE_ONCALL_NUMBER`): one person, so one
outage caller at a time, and answered only when they take the call.

- The line is taken for one call before their phone rings (`take_line`) and
  freed when that ring or talk ends (`free_line`: the `<Dial>` action, or the
  call's end when the action never comes), so a second outage caller at night
  waits for hosting instead of ringing a phone that is busy, or its voicemail.
- Like an advisor, the engineer hears a whisper and takes the call with a key
  (`play_whisper`, `take_call`): a voicemail that picks up presses no key, so it
  never "answers" a Critical outage (the caller goes on to the hosting queue).
"""

from __future__ import annotations

from directory import keys
from directory.scripts import script
from routing.call_state import get_call, is_ended, update_call
from routing.desk import Desk
from routing.whisper import Whisper, call_facts

# Who answers for the on-call engineer in the call's hash and its log.
ONCALL = "on-call"

# Free the line only for the call holding it (a late action of an earlier call
# must not free it for the next one).
_FREE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def take_line(desk: Desk, call_sid: str) -> bool:
    """Take the on-call line for this call (True also when it already holds it: a
    repeat of the webhook that took it). Held at most the talk lease
    (`talk_lease_seconds`), the same safety net as an advisor's talk."""
    r = desk.r
    if r.set(keys.oncall_line(), call_sid, nx=True,
             ex=desk.settings.talk_lease_seconds):
        return True
    return r.get(keys.oncall_line()) == call_sid


def free_line(desk: Desk, call_sid: str) -> bool:
    """Free the on-call line if this call holds it; whether it did."""
    return bool(script(desk.r, _FREE)(keys=[keys.oncall_line()], args=[call_sid],
                                      client=desk.r))


def play_whisper(desk: Desk, call_sid: str) -> Whisper | None:
    """The on-call engineer picked up: what to tell them (None when the caller is no
    longer waiting for them). From now, no key counts as no answer."""
    call = get_call(desk.r, call_sid)
    if call.get("state") != "oncall" or is_ended(desk.r, call_sid):
        return None
    if call.get("oncall_whisper") != "accepted":
        update_call(desk.r, call_sid, oncall_whisper="played")
    return call_facts(call)


def take_call(desk: Desk, call_sid: str, now_ms: int) -> bool:
    """The on-call engineer pressed the accept key: bridged, if the caller is still
    waiting for them (`now_ms`: ms since the epoch, UTC)."""
    call = get_call(desk.r, call_sid)
    if call.get("state") != "oncall" or is_ended(desk.r, call_sid):
        return False
    update_call(desk.r, call_sid, oncall_whisper="accepted", answered_by=ONCALL,
                answered_at=now_ms)
    return True


def answered(call: dict[str, str], dial_answered: bool) -> bool:
    """Whether the on-call engineer took the call: they pressed the key, or Twilio says
    the dial was answered and no whisper was played (a ring from before the whisper)."""
    if call.get("oncall_whisper") == "accepted":
        return True
    return dial_answered and call.get("oncall_whisper") != "played"
