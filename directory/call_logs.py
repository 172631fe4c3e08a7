"""Call logs: the session of a finished call written once onto its case."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from directory.models import CallLog


@dataclass(frozen=True)
class SurveyHistory:
    """A contact's surveys: whether they ever opted out, and when the latest one
    offered since the time asked about was offered (an aware UTC time, or None)."""

    opted_out: bool
    offered_at: datetime | None

    @property
    def surveyed_since(self) -> bool:
        """Whether a survey was offered since the time asked about."""
        return self.offered_at is not None


def survey_history(
    session_factory: sessionmaker[Session], contact_id: str, since: datetime
) -> SurveyHistory:
    """What the call logs say of a contact's surveys (`since`: an aware time). A survey
    is dated by its log's `survey_offered_at` (Unix ms) when it has one, else by the
    call's start (logs written before it was kept)."""
    with session_factory() as db:
        rows = db.execute(
            select(CallLog.started_at, CallLog.details).where(CallLog.contact_id == contact_id)
        ).all()
    opted_out, offered_at = False, None
    for started_at, details in rows:
        details = details or {}
        opted_out = opted_out or bool(details.get("survey_opt_out"))
        when = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
        offered_ms = details.get("survey_offered_at")
        if isinstance(offered_ms, int):
            # When it was offered: the call may have started the date before.
            when = datetime.fromtimestamp(offered_ms / 1000, tz=UTC)
        if details.get("survey_offered") and when >= since:
            offered_at = max(offered_at or when, when)
    return SurveyHistory(opted_out, offered_at)


def calls_on_case(session_factory: sessionmaker[Session] | None, number: str) -> list[dict]:
    """The call logs of a case, oldest first."""
    if session_factory is None:
        return []
    with session_factory() as db:
        rows = db.scalars(
            select(CallLog)
            .where(CallLog.case_number == number)
            .order_by(CallLog.started_at, CallLog.id)
        ).all()
        return [row.to_dict() for row in rows]


def calls_answered_by(session_factory: sessionmaker[Session] | None, advisor_id: str,
                      start: datetime, end: datetime) -> list[dict]:
    """The calls an advisor answered between `start` and `end`, newest first."""
    if session_factory is None:
        return []
    with session_factory() as db:
        rows = db.scalars(
            select(CallLog)
            .where(CallLog.answered_by == advisor_id, CallLog.started_at >= start,
                   CallLog.started_at < end)
            .order_by(CallLog.started_at.desc(), CallLog.id.desc())
        ).all()
        return [row.to_dict() for row in rows]


@dataclass(frozen=True)
class OverallAnswer:
    """A call's answer to the survey's "overall" question (1-5), as its log holds it:
    when its survey was offered (aware UTC), who answered the call, for which team."""

    call_sid: str
    overall: int
    offered_at: datetime
    advisor_id: str
    team: str


def overall_answers(session_factory: sessionmaker[Session], start: datetime,
                    end: datetime) -> list[OverallAnswer]:
    """The "overall" answers of the surveys offered from `start` to `end` (aware times).
    A survey is dated as `survey_history` dates it: by `survey_offered_at`, else by the
    call's start; a call starts at most a day before its survey is offered (its state
    lasts a day), so only the logs of calls started from the day before `start` are read,
    and of those only the answered ones (the survey follows an advisor)."""
    with session_factory() as db:
        rows = db.execute(
            select(CallLog.call_sid, CallLog.started_at, CallLog.answered_by, CallLog.team,
                   CallLog.details)
            .where(CallLog.started_at >= start - timedelta(days=1), CallLog.started_at < end,
                   CallLog.answered_by.is_not(None))
        ).all()
    found = []
    for call_sid, started_at, advisor_id, team, details in rows:
        overall = ((details or {}).get("survey") or {}).get("overall")
        if not isinstance(overall, int) or not 1 <= overall <= 5:
            continue
        when = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
        offered_ms = details.get("survey_offered_at")
        if isinstance(offered_ms, int):
            when = datetime.fromtimestamp(offered_ms / 1000, tz=UTC)
        if start <= when < end:
            found.append(OverallAnswer(call_sid, overall, when, advisor_id or "",
                                       team or "general"))
    return found
