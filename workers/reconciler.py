"""The reconciler's jobs: the end of an advisor's wrap-up (the RQ job earlier releases
scheduled when it started; the wrap-up clock, `workers.wrapups`, ends them now), and
the periodic pass that frees holds nobody released, drops callers who are gone, and asks
Twilio about calls open long after they began (their final status callback lost)."""

from __future__ import annotations

import time

from jobs.queues import resume_call_logs
from routing import acd, availability, outage, waiting
from routing.call_end import OPEN_CALLS_PASS_SECONDS, check_open_calls, release_ended_holds
from routing.redis_restarts import notice_redis_restart
from routing.twilio_queues import size_team_queues
from workers.context import current_desk
from workers.set_aside import retry_set_aside_call_logs

# How long (seconds) a pass goes on offering idle advisors the callers waiting: each
# offer is one script, but a claimed caller's redirect fails for seconds while Twilio
# does (retried, then the caller kept); the next pass, 10 s on, offers the rest.
OFFER_PASS_SECONDS = 4.0


def end_wrapup(advisor_id: str, call_sid: str) -> str:
    """Wrap-up is over: the advisor becomes available or takes the next caller. Kept for
    the jobs an earlier release scheduled before an upgrade (`jobs.queues
    .end_of_wrapup_job_id`): such a job and the wrap-up clock end it once between them
    (the second finds the hold gone: "stale")."""
    release = availability.end_wrapup(current_desk(), advisor_id, call_sid, int(time.time() * 1000))
    return release.outcome


def reconcile() -> dict[str, int]:
    """Free advisors whose hold expired, release the advisors and the on-call line
    still held by calls whose end was recorded a minute ago or more
    (`ended_holds_released`: `call_end.release_ended_holds`, an end applied halfway),
    drop waiting callers who are gone, put the calls whose log was set aside back
    among the calls to log when their next try is due
    (`call_logs_retried`), queue the call-log job again for calls whose last job failed
    for good (nothing is dropped, even when no call ends after a long database outage),
    then end and log the calls Twilio says are over whose status callback never came
    (`check_open_calls`: its counts, `open_calls_*`, join the others). When Redis
    restarted since the last pass (`notice_redis_restart`: a snapshot may have brought
    back calls over and logged since), every open call is due for that check at once
    (`open_calls_made_due`), and every advisor it brought back available and idle is
    held until Twilio says they are on no call (`advisors_held_to_confirm`; each pass
    asks about those held: `advisors_on_live_calls`, `advisors_confirmed_free`,
    `advisors_left_to_confirm`); when it restarted or came back empty, the directory cache
    is rebuilt, the pending callbacks it lost are put back from the database
    (`callbacks_restored`), and idle available advisors are offered the callers waiting
    (`waiting_callers_served`). Every pass then offers idle available advisors the
    callers waiting (`waiting_callers_offered`: `availability.offer_waiting_callers`);
    at night the on-call engineer's line, free, goes to the first caller who may have
    them (`oncall_caller_served`: `outage.serve_oncall_line`); and the callers past
    `CASELINE_MAX_WAIT_SECONDS` who have not heard the voicemail offered are brought
    back into their queue to hear it (`voicemail_offers`: `waiting.offer_voicemails`).
    Neither waits for the caller's next hold cycle, a hold-music track away. Last, each
    team's queue at Twilio is made to hold 5000 waiting calls, not Twilio's default 1000
    (`twilio_queues_sized`: `routing.twilio_queues`; only teams not seen sized within
    the hour, so most passes ask Twilio nothing; a failure lets Twilio be for a minute,
    as the open calls' checks do, and is tried again after it)."""
    desk, now = current_desk(), time.time()
    done = acd.reconcile(desk, int(now * 1000))
    # An end applied halfway (Redis failed after its script, no repeat followed): the
    # advisor and the on-call line it still holds are released, hours before their
    # leases run out.
    done["ended_holds_released"] = release_ended_holds(desk, int(now * 1000))
    done["call_logs_retried"] = retry_set_aside_call_logs(desk.job_redis, now)
    done["call_logs_resumed"] = int(resume_call_logs(desk.job_redis, now))
    done.update(notice_redis_restart(desk, int(now * 1000)))
    # Callers waiting beside idle advisors: a callback put back in its place (Twilio
    # would not place it, or its advisor missed the ring) has no hold cycle to claim
    # one. Cheap when nobody waits (one round trip).
    done["waiting_callers_offered"] = availability.offer_waiting_callers(
        desk, int(now * 1000), budget_s=OFFER_PASS_SECONDS)
    # At night, the on-call engineer's line free beside a caller who may have them (its
    # lease ran out, a redirect failed, the engineer's 60 s after a miss are over):
    # brought over now, not at their next hold cycle, a hold-music track away.
    done["oncall_caller_served"] = int(outage.serve_oncall_line(desk, int(now * 1000)) is not None)
    # Callers past the longest wait hear the voicemail offer now (once each), not at
    # their next hold cycle.
    done["voicemail_offers"] = waiting.offer_voicemails(desk, int(now * 1000))
    # Last: its REST requests may take seconds, and holds must not wait behind them.
    asking_from = time.monotonic()
    done.update(check_open_calls(desk, int(now * 1000)))
    # Within the same time for Twilio as the open calls (no request starts past it),
    # so a pass still fits in the reconciler's interval; nothing when Twilio is let be.
    done["twilio_queues_sized"] = size_team_queues(
        desk, int(now * 1000), deadline=asking_from + OPEN_CALLS_PASS_SECONDS)
    return done
