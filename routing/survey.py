"""The satisfaction survey: the desk measures courtesy, knowledge, timeliness,
quality and overall service, at most once per contact every 30 days, with an
opt-out, against a target above 95% (the desk's policy).

It is asked on the phone when the advisor hangs up first (the caller is still
on the line after the `<Dial>`): five one-key questions (1–5), `#` skips one,
9 opts out for good. Answers go on the call (its Redis hash) and from there on
its log (a key pressed as the caller hangs up may come after the status
callback: the log written by then is brought up to date); the day's counts of
"overall" answers feed `/api/stats`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy.exc import SQLAlchemyError

from config.hours import CENTRAL, central_date
from directory import keys
from directory.call_logs import survey_history
from directory.scripts import script
from routing import auth
from routing.acd import CallFinished, Decision
from routing.call_state import get_call, update_logged_call
from routing.desk import Desk

QUESTIONS = ("courtesy", "knowledge", "timeliness", "quality", "overall")
EVERY_DAYS = 30
TARGET = 0.95  # share of 4 and 5 on "overall"
OPT_OUT_KEY = "9"
SKIP_KEY = "#"
# Why a contact is not asked now (the value of their `keys.survey_hold`).
OPTED_OUT, SURVEYED = "opted-out", "surveyed"
# Days of "overall" counts kept in Redis (the 30-day figure, and a margin).
_COUNTS_TTL_SECONDS = 40 * 24 * 3600


@dataclass(frozen=True)
class AskSurvey:
    """Ask question `question` (an index into QUESTIONS); the first comes with the intro."""

    question: int


@dataclass(frozen=True)
class SurveyOver:
    """Thank the caller (or confirm their opt-out) and hang up."""

    opted_out: bool = False


def after_the_advisor(
    desk: Desk, call_sid: str, decision: Decision, call_status: str, now: datetime
) -> Decision | AskSurvey:
    """What follows an answered call's `<Dial>`: the survey when the advisor hung up
    first (Twilio's `CallStatus` still `in-progress`) and the contact is eligible,
    else `decision` unchanged."""
    if not isinstance(decision, CallFinished) or not decision.answered_by:
        return decision
    call = get_call(desk.r, call_sid) if call_status == "in-progress" else {}
    if not call:
        return decision
    if call.get("survey_offered") == "1":
        # Offered on this call already: a repeat whose first attempt never answered
        # Twilio (its process died) hears the survey too, not a goodbye under the
        # hold that attempt set.
        return AskSurvey(0)
    if not eligible(desk, call, now):
        return decision
    # When it was offered, for the 30 days: a call may start the day before (an
    # outage call answered at night), and the call log's start would date it then.
    update_logged_call(desk, call_sid, survey_offered=1,
                       survey_offered_at=int(now.timestamp() * 1000))
    _hold(desk, call["contact"], SURVEYED, _seconds_left(now, now))
    return AskSurvey(0)


def _window_start(now: datetime) -> datetime:
    """The first moment of "the last 30 days" at `now`: midnight Central opening the
    29th date before today's. The desk counts every date rule in Central dates
    (PRODUCT.md), so the last 30 days are today and the 29 dates before it."""
    first = central_date(now) - timedelta(days=EVERY_DAYS - 1)
    return datetime.combine(first, time(0), tzinfo=CENTRAL)


def _seconds_left(offered_at: datetime, now: datetime) -> int:
    """Seconds from `now` until a survey offered at `offered_at` no longer holds the
    contact back: midnight Central opening the 30th date after the offer's (at least 1)."""
    ends = datetime.combine(central_date(offered_at) + timedelta(days=EVERY_DAYS), time(0),
                            tzinfo=CENTRAL)
    return max(1, int((ends - now).total_seconds()))


def eligible(desk: Desk, call: dict[str, str], now: datetime) -> bool:
    """A verified contact, not surveyed in the last 30 days (Central dates: today and
    the 29 before, so a contact surveyed on the 1st is asked again from the 31st), not
    opted out. A database that does not answer makes nobody eligible (the survey
    never delays a caller).

    The survey's hold on the contact in Redis (`keys.survey_hold`) answers first:
    it is set the moment a survey is offered or refused for good, before the
    call's log is written, and it spares the database on most answered calls.
    Without one (a contact not surveyed lately, or Redis emptied), the call logs
    decide, and their answer is held in Redis for the next call.
    """
    contact = call.get("contact")
    if not contact or not auth.is_authorized(call) or desk.session_factory is None:
        return False
    if desk.r.exists(keys.survey_hold(contact)):
        return False
    try:
        history = survey_history(desk.session_factory, contact, _window_start(now))
    except SQLAlchemyError:
        return False
    if history.opted_out:
        _hold(desk, contact, OPTED_OUT)
    elif history.offered_at is not None:
        _hold(desk, contact, SURVEYED, _seconds_left(history.offered_at, now))
    return not history.opted_out and not history.surveyed_since


def _hold(desk: Desk, contact_id: str, why: str, seconds: int | None = None) -> None:
    """No survey for the contact: for good (`seconds` None) or for `seconds`. A hold
    for a while never replaces one for good (two of the contact's calls at once)."""
    desk.r.set(keys.survey_hold(contact_id), why, ex=seconds, nx=seconds is not None)


def answer(
    desk: Desk, call_sid: str, question: int, digits: str, now: datetime
) -> AskSurvey | SurveyOver:
    """The caller's key for question `question`: 1–5 an answer, `#` or nothing a skip,
    9 the opt-out (no more surveys, ever). Any other key counts as a skip."""
    call = get_call(desk.r, call_sid) if 0 <= question < len(QUESTIONS) else {}
    if not call:
        return SurveyOver()
    if digits == OPT_OUT_KEY:
        update_logged_call(desk, call_sid, survey_opt_out=1)
        if call.get("contact"):
            _hold(desk, call["contact"], OPTED_OUT)
        return SurveyOver(opted_out=True)
    name = QUESTIONS[question]
    if len(digits) == 1 and digits in "12345":
        # The last key may come after the status callback (the caller hung up on it):
        # the log, written by then, gets it late.
        kept = update_logged_call(desk, call_sid, **{f"survey_{name}": digits})
        if kept and name == "overall":
            _count_overall(desk, call_sid, call.get("team") or "", call.get("answered_by") or "",
                           digits, now)
    if question + 1 < len(QUESTIONS):
        return AskSurvey(question + 1)
    return SurveyOver()


def answers(call: dict[str, str]) -> dict[str, int]:
    """The survey answers a call holds, by question (only those answered)."""
    return {q: int(call[f"survey_{q}"]) for q in QUESTIONS if call.get(f"survey_{q}")}


# Count a call's "overall" answer once, however often Twilio posts it (a retry comes
# without its token): marked on the call's hash (KEYS[1], `survey_counted`) in the
# same step as the counts (KEYS[2..]: the day's figures of the team and the advisor).
# ARGV: [1] "1" when satisfied (4 or 5), [2] the counts' TTL (s). 1 when counted now.
_COUNT_OVERALL_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 0 or
   redis.call('HSETNX', KEYS[1], 'survey_counted', '1') == 0 then return 0 end
for i = 2, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'answers', 1)
  if ARGV[1] == '1' then redis.call('HINCRBY', KEYS[i], 'satisfied', 1) end
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 1
"""


def _count_overall(desk: Desk, call_sid: str, team: str, advisor_id: str, digits: str,
                   now: datetime) -> None:
    """Count a call's "overall" answer on the day's figures of its team and advisor,
    once per call (a repeated post of the answer counts nothing)."""
    day = central_date(now).isoformat()
    counted = [keys.survey_overall(team or "general", day)]
    if advisor_id:
        counted.append(keys.survey_overall_of_advisor(advisor_id, day))
    script(desk.r, _COUNT_OVERALL_ONCE)(
        keys=[keys.call(call_sid), *counted],
        args=["1" if digits in "45" else "0", _COUNTS_TTL_SECONDS], client=desk.r)


def overall_satisfaction(desk: Desk, team: str, now: datetime) -> float | None:
    """The share of 4 and 5 on "overall" over the last 30 days (Central dates, today
    included) for `team`; None before any answer."""
    share, _ = _over_30_days(desk, lambda day: keys.survey_overall(team, day), now)
    return share


def advisor_satisfaction(desk: Desk, advisor_id: str,
                         now: datetime) -> dict[str, float | int | None]:
    """An advisor's own figure for the console: `{"overall_satisfied_30d": share of 4
    and 5 on "overall" over the last 30 days (None before any answer), "answers":
    how many, "target": 0.95}`."""
    share, total = _over_30_days(
        desk, lambda day: keys.survey_overall_of_advisor(advisor_id, day), now)
    return {"overall_satisfied_30d": share, "answers": total, "target": TARGET}


def _over_30_days(desk: Desk, key_of: Callable[[str], str],
                  now: datetime) -> tuple[float | None, int]:
    """(share satisfied or None, answers) summed over the 30 days' counts."""
    today = central_date(now)
    pipe = desk.r.pipeline(transaction=False)
    for days in range(EVERY_DAYS):
        pipe.hmget(key_of((today - timedelta(days=days)).isoformat()), "answers", "satisfied")
    total = satisfied = 0
    for got, happy in pipe.execute():
        total += int(got or 0)
        satisfied += int(happy or 0)
    return (round(satisfied / total, 4) if total else None), total
