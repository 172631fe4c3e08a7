"""State the previous release left in Redis, brought to this release's shape when
a service or worker starts (`caseline serve` and `caseline worker` run it before
taking calls or jobs).

The previous release held an advisor in wrap-up with the token `wrapup-<CallSid>`
in their `call` field, and scheduled the wrap-up's end as the job
`workers.presence.end_wrapup` (a path this release renamed). Left alone, such an
advisor could not end their own wrap-up and was freed only by the reconciler,
its job failing on the way. Now their hold becomes `call=<CallSid>`,
`hold=wrapup` and the wrap-up's end is scheduled again, at the same time, under
this release's job. Running it twice changes nothing.
"""

from __future__ import annotations

import redis

from directory import keys
from directory.scripts import script
from jobs.queues import drop_job, end_of_wrapup_job_id, schedule_end_of_wrapup

# One atomic pass over every advisor: (advisor id, CallSid, lease until ms) for
# each hold moved from the old token to the `hold` field.
_WRAPUP_TOKENS = r"""
local moved = {}
for _, id in ipairs(redis.call("SMEMBERS", KEYS[1])) do
  local key = ARGV[1] .. id .. ARGV[2]
  local call = redis.call("HGET", key, "call") or ""
  if string.sub(call, 1, 7) == "wrapup-" then
    local sid = string.sub(call, 8)
    redis.call("HSET", key, "call", sid, "hold", "wrapup")
    table.insert(moved, id)
    table.insert(moved, sid)
    table.insert(moved, redis.call("HGET", key, "lease") or "0")
  end
end
return moved
"""


def upgrade_wrapups(r: redis.Redis, job_redis: redis.Redis, now_ms: int) -> list[str]:
    """Move the previous release's wrap-up holds to this release's shape and reschedule
    their end (never earlier than `now_ms`, ms since the epoch); the advisor ids moved.

    `r` decodes responses (the desk's client); `job_redis` is RQ's (bytes).
    """
    prefix, _, suffix = keys.advisor("\0").partition("\0")
    found = script(r, _WRAPUP_TOKENS)(keys=[keys.advisors()], args=[prefix, suffix], client=r)
    moved = []
    for i in range(0, len(found), 3):
        advisor_id, call_sid, lease = found[i], found[i + 1], int(float(found[i + 2] or 0))
        drop_job(job_redis, end_of_wrapup_job_id(advisor_id, f"wrapup-{call_sid}"))
        schedule_end_of_wrapup(job_redis, advisor_id, call_sid, max(lease, now_ms))
        moved.append(advisor_id)
    return moved
