"""The satisfaction survey: the desk measures courtesy, knowledge, timeliness,
quality and overall service, at most once per contact every 30 days, with an
opt-out, against a target above 95% (the desk's policy).

It is asked on the phone when the advisor hangs up first (the caller is still
on the line after the `<Dial>`): five one-key questions (1–5), `#` skips one,
9 opts out for good. Answers go on the call (its Redis hash) and from there on
its log (a key pressed as the caller hangs up may come after the status
callback: the log written by then is brought up to date). The "overall" answers of
the last 30 days feed `/api/stats` and the advisor's console: the call logs are their
record, Redis a cache by day of them, read back from the logs when it lacks a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.exc import SQLAlchemyError

from config.hours import CENTRAL, central_date
from directory import keys
from directory.call_logs import overall_answers, survey_history
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
            _count_overall(desk, call_sid, call, digits, now)
    if question + 1 < len(QUESTIONS):
        return AskSurvey(question + 1)
    return SurveyOver()


def answers(call: dict[str, str]) -> dict[str, int]:
    """The survey answers a call holds, by question (only those answered)."""
    return {q: int(call[f"survey_{q}"]) for q in QUESTIONS if call.get(f"survey_{q}")}


# A call's "overall" answer on the day's answers (KEYS[2], a hash by CallSid: a call
# counts once however often Twilio posts its answer, whether the logs were read back
# before or after), only for a call we know (KEYS[1]). ARGV: [1] CallSid, [2] the
# answer's entry, [3] the hash's TTL (s).
_COUNT_OVERALL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


def _entry(digits: str | int, advisor_id: str, team: str) -> str:
    """A call's entry in a day's answers: "<answer> <advisor> <team>"."""
    return f"{digits} {advisor_id} {team or 'general'}"


def _offer_day(call: dict[str, str], now: datetime) -> date:
    """The Central date of a call's survey: of its offer (as its log dates it), else now."""
    offered_ms = call.get("survey_offered_at", "")
    if offered_ms.isdigit():
        return central_date(datetime.fromtimestamp(int(offered_ms) / 1000, tz=UTC))
    return central_date(now)


def _count_overall(desk: Desk, call_sid: str, call: dict[str, str], digits: str,
                   now: datetime) -> None:
    """Put a call's "overall" answer on its survey's day, for its team and advisor: one
    entry per call, so a repeated post counts nothing more."""
    day = _offer_day(call, now).isoformat()
    script(desk.r, _COUNT_OVERALL)(
        keys=[keys.call(call_sid), keys.survey_overall(day)],
        args=[call_sid, _entry(digits, call.get("answered_by") or "", call.get("team") or ""),
              _COUNTS_TTL_SECONDS], client=desk.r)


def overall_satisfaction(desk: Desk, team: str, now: datetime) -> float | None:
    """The share of 4 and 5 on "overall" over the last 30 days (Central dates, today
    included) for `team`; None before any answer."""
    return overall_satisfaction_by_team(desk, now).get(team)


def overall_satisfaction_by_team(desk: Desk, now: datetime) -> dict[str, float | None]:
    """`overall_satisfaction` of every team with an answer in the last 30 days."""
    by_team: dict[str, list[int]] = {}
    for answer, _, team in _answers_30_days(desk, now).values():
        by_team.setdefault(team, []).append(answer)
    return {team: _share(found)[0] for team, found in by_team.items()}


def advisor_satisfaction(desk: Desk, advisor_id: str,
                         now: datetime) -> dict[str, float | int | None]:
    """An advisor's own figure for the console: `{"overall_satisfied_30d": share of 4
    and 5 on "overall" over the last 30 days (None before any answer), "answers":
    how many, "target": 0.95}`."""
    share, total = _share([answer for answer, advisor, _ in _answers_30_days(desk, now).values()
                           if advisor == advisor_id])
    return {"overall_satisfied_30d": share, "answers": total, "target": TARGET}


def _share(found: list[int]) -> tuple[float | None, int]:
    """(share of 4 and 5 or None, answers)."""
    satisfied = sum(1 for answer in found if answer >= 4)
    return (round(satisfied / len(found), 4) if found else None), len(found)


def _answers_30_days(desk: Desk, now: datetime) -> dict[str, tuple[int, str, str]]:
    """The "overall" answers of the last 30 days by CallSid: (answer, advisor, team).

    Redis holds them by day (`keys.survey_overall`) as a cache of the call logs, the
    record: a day the logs were not read back for (Redis restarted, failed over, was
    emptied; or a new day), or today and yesterday read more than
    `_RECENT_READ_BACK_MS` ago, is read back from the logs first. A call's entry counts
    once, whether it came from the survey or from its log."""
    today = central_date(now)
    days = [(today - timedelta(days=back)).isoformat() for back in range(EVERY_DAYS)]
    pipe = desk.r.pipeline(transaction=False)
    for day in days:
        pipe.hgetall(keys.survey_overall(day))
        pipe.get(keys.survey_overall_read(day))
    got = pipe.execute()
    entries: dict[str, str] = {}
    now_ms = int(now.timestamp() * 1000)
    stale = []
    for back, day in enumerate(days):
        day_entries, read_at = got[2 * back], got[2 * back + 1]
        entries.update(day_entries)
        if read_at is None or (back < 2 and now_ms - int(read_at) > _RECENT_READ_BACK_MS):
            stale.append(day)
    if stale:
        entries = {**_read_back(desk, stale, now_ms), **entries}
    answers = {}
    for call_sid, entry in entries.items():
        answer, advisor, team = entry.split(" ", 2)
        answers[call_sid] = (int(answer), advisor, team)
    return answers


# Today's and yesterday's answers are read back from the logs again this often: an
# answer Redis lost in a failover after they were read (its log written, its entry
# not kept) comes back within minutes. Earlier days' logs are settled; read once.
_RECENT_READ_BACK_MS = 10 * 60 * 1000


def _read_back(desk: Desk, days: list[str], now_ms: int) -> dict[str, str]:
    """Put the call logs' "overall" answers of these days (ISO dates) into Redis and mark
    the days read; the entries read. An entry already there is kept (the survey wrote it,
    perhaps later than the log: a late key). With the database out of reach, nothing (the
    days are read back at the next look)."""
    if desk.session_factory is None:
        return {}
    first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
    try:
        found = overall_answers(desk.session_factory,
                                datetime.combine(first, time(0), tzinfo=CENTRAL),
                                datetime.combine(last + timedelta(days=1), time(0),
                                                 tzinfo=CENTRAL))
    except SQLAlchemyError:
        return {}
    wanted = set(days)
    pipe = desk.r.pipeline(transaction=False)
    entries = {}
    for answer in found:
        day = central_date(answer.offered_at).isoformat()
        if day not in wanted:
            continue
        entries[answer.call_sid] = _entry(answer.overall, answer.advisor_id, answer.team)
        pipe.hsetnx(keys.survey_overall(day), answer.call_sid, entries[answer.call_sid])
    for day in days:
        pipe.expire(keys.survey_overall(day), _COUNTS_TTL_SECONDS)
        pipe.set(keys.survey_overall_read(day), now_ms, ex=_COUNTS_TTL_SECONDS)
    pipe.execute()
    return entries
