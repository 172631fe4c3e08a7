"""Advisor presence and matching, one Lua script per transition.

An advisor is available, busy or offline. A busy advisor's hash names the
call they hold (`call`, a CallSid only) and how (`hold`: ringing, talking,
wrapup); a release names the call it ends, so a late or repeated one is stale.
Each team keeps a sorted set of its available advisors scored by idle-since
and a sorted set of its waiting callers scored by priority band then arrival.
The two directions of a match are each one atomic script:

* `claim_for_caller`: a caller arrives (or the advisor they rang failed):
  claim the owner if available, else the longest-idle available teammate not
  yet tried on this call, else put the caller in the team's waiting set. A
  call marked `one_place` (an unverified outage report) takes a waiting
  place only if no other call from its number still holds one (outcome
  "taken"): checked and taken in the same step, so two calls from one
  number at the same moment never both wait.
* `make_available`: an advisor becomes free: hand them the best waiting
  caller among their teams, else add them to their teams' available sets.

Every claim holds a lease (a score in the leases set) so a lost callback can
never leave an advisor busy forever: the reconciler releases expired ones
through `make_available` too.

An advisor's teams are the directory's to write
(`directory.cache.update_advisor_teams`, which re-files an available advisor
under new teams and changes nothing else here).

The scripts build advisor and team keys from templates passed in by
`directory.keys`, so key spelling still lives in one place. They touch keys
they compute, which is fine on one Redis server (not on a cluster).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from config import hours
from directory import keys
from directory.catalog import GENERAL, HOSTING
from directory.scripts import as_hash, script
from jobs.queues import CALLS_TO_LOG

BANDS = {"critical": 0, "high": 1, "medium": 2, "low": 3}
BAND_WIDTH = 10**13  # wider than any millisecond timestamp (the scripts use it too)

# A number's waiting place outlives no call (a call's hash lives a day); it counts
# only while the call holding it still waits, so it never needs releasing.
NUMBER_PLACE_TTL_SECONDS = 24 * 3600

STATUSES = ("available", "busy", "offline")
# How a busy advisor holds their call: claimed and ringing (or being brought
# over from the queue), talking, or in wrap-up after it.
HOLDS = ("ringing", "talking", "wrapup")

# Rings in a row an advisor lets go by (no answer within the ring timeout, busy, failed,
# or no key at the whisper: their voicemail) while the caller was still there, after
# which the line sets them offline, `away` "missed-rings", until they set themselves
# available: each further caller would ring them for ~25 s before the next advisor.
# The field's rule (redirect on no answer; Twilio TaskRouter moves a worker whose
# reservation timed out to its timeout activity, Offline by default); one miss alone
# may be a moment away from the desk, so it takes two. A callback's ring to the advisor
# counts as a caller's.
MISSED_RINGS_AWAY = 2

# Shared Lua helpers, prepended to each script. Every script fills an id into a key
# template with a function as gsub's replacement: a string there treats '%' as
# special, so an id such as "100%" built no key (the script raised) or a wrong one.
_LUA_COMMON = r"""
local function akey(id) return (string.gsub(ARGV[1], "{}", function() return id end, 1)) end
local function avail_key(team) return (string.gsub(ARGV[2], "{}",
    function() return team end, 1)) end
local function wait_key(team) return (string.gsub(ARGV[3], "{}", function() return team end, 1)) end
local function call_key(sid) return (string.gsub(ARGV[4], "{}", function() return sid end, 1)) end
local LEASES = ARGV[5]
local function on_call(id, sid)
  -- Ringing or talking on this call (a wrap-up after it holds no caller).
  return sid ~= "" and redis.call("HGET", akey(id), "call") == sid
     and redis.call("HGET", akey(id), "hold") ~= "wrapup"
end
local function lease_renewed(id, expired_by)
  -- The hold's lease runs past `expired_by` (ms): a webhook moved it on since it
  -- was found expired (the advisor took the call, say).
  local lease = tonumber(redis.call("HGET", akey(id), "lease") or "")
  return lease ~= nil and lease > tonumber(expired_by)
end
local function extend_ring(id, lease_until)
  -- A ringing hold's lease runs at least until `lease_until` (ms); a talk's, or a
  -- longer renewal's, stays.
  if redis.call("HGET", akey(id), "hold") == "ringing" then
    local lease = tonumber(redis.call("HGET", akey(id), "lease") or "") or 0
    if lease < lease_until then
      redis.call("HSET", akey(id), "lease", string.format("%d", lease_until))
      redis.call("ZADD", LEASES, lease_until, id)
    end
  end
end
local function given_fallback_since(sid, since)
  -- The call was given the fallback reply (`call_state.note_fallback`) at or after
  -- `since` (ms): the caller is with the fallback number (or gone), and a redirect of
  -- the call would cut that conversation. A mark older than that was for a reply
  -- Twilio did not act on: the call came back to the desk since.
  local at = tonumber(redis.call("HGET", call_key(sid), "fallback_at") or "")
  return at ~= nil and at >= since
end
local function return_caller(sid)
  -- A caller claimed for an advisor, who was never brought over, back where they
  -- waited (same score: same band, same arrival). 1 when queued again; never a
  -- caller given the fallback reply since the claim (their `/voice/connect` failed),
  -- but for a callback's contact (called back on a new call, which cuts nothing).
  local team = redis.call("HGET", call_key(sid), "waiting_team")
  local score = redis.call("HGET", call_key(sid), "wait_score")
  local facts = redis.call("HMGET", call_key(sid), "callback", "claimed_at")
  redis.call("HSET", call_key(sid), "advisor", "")
  if facts[1] ~= "1" and given_fallback_since(sid, tonumber(facts[2] or "") or 0) then
    return 0
  end
  if not team or team == "" or not score or score == "" then return 0 end
  redis.call("ZADD", wait_key(team), tonumber(score), sid)
  redis.call("HSET", call_key(sid), "state", "queued")
  return 1
end
local function callback_rings(sid, id, leg)
  -- The callback `sid` rings advisor `id`, on leg `leg` ("" = whichever).
  local call = call_key(sid)
  return redis.call("HGET", call, "callback") == "1"
     and redis.call("HGET", call, "callback_state") == "ringing-advisor"
     and redis.call("HGET", call, "ringing") == id
     and (leg == "" or redis.call("HGET", call, "callback_leg") == leg)
end
local function end_callback_ring(sid, general, now_ms, to_log)
  -- The advisor's leg for a callback ended unanswered: the contact gets their place
  -- back (`routing.callbacks`), or after the third offer the callback is done and
  -- its call is to be logged (added to `to_log`). Nothing when already back.
  local call = call_key(sid)
  local team = redis.call("HGET", call, "waiting_team")
  if not team or team == "" then team = general end
  local score = redis.call("HGET", call, "wait_score")
  local offers = tonumber(redis.call("HGET", call, "callback_offers") or "0") + 1
  if redis.call("ZSCORE", wait_key(team), sid) then return end
  if offers < 3 and score and score ~= "" then
    redis.call("ZADD", wait_key(team), tonumber(score), sid)
    -- The leg is forgotten: its late or repeated end must never pass for the end
    -- of the next leg the desk places for this callback.
    redis.call("HSET", call, "callback_offers", offers, "advisor", "",
               "callback_state", "waiting", "ringing", "", "callback_leg", "")
  else
    redis.call("HSET", call, "callback_state", "done", "ended_at", now_ms)
    redis.call("ZADD", to_log, "NX", tonumber(now_ms) / 1000, sid)
  end
end
local function split(csv)
  local out = {}
  for part in string.gmatch(csv or "", "[^,]+") do table.insert(out, part) end
  return out
end
local function take_advisor(id, sid, now, lease_until)
  -- Mark an advisor busy for a call and out of every available set.
  local teams = split(redis.call("HGET", akey(id), "teams"))
  for _, team in ipairs(teams) do redis.call("ZREM", avail_key(team), id) end
  redis.call("HSET", akey(id), "status", "busy", "since", now, "call", sid,
             "hold", "ringing", "lease", lease_until)
  redis.call("ZADD", LEASES, lease_until, id)
  redis.call("HSET", call_key(sid), "advisor", id, "claimed_at", now)
end
"""

_CLAIM_FOR_CALLER = _LUA_COMMON + r"""
-- ARGV[6] call sid, [7] owner id or "", [8] team, [9] now ms,
-- [10] lease until ms, [11] band, [12] "1" to queue when nobody is free,
-- [13] key of the advisors tried on this call (scored by when),
-- [14] advisors tried at or after this time (ms) are not rung again,
-- [15] the set of all teams (a team someone waits for is a team),
-- [16] the width of a priority band (a waiting score is band * width + arrival),
-- [17], [18] a number's place's key, before and after the number,
-- [19], [20] a call's ended mark's key, before and after the CallSid,
-- [21] how long a number's place is kept (s; it counts only while its call waits)
local sid, owner, team = ARGV[6], ARGV[7], ARGV[8]
local now, lease_until, band = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local may_queue, tried, tried_since = ARGV[12], ARGV[13], tonumber(ARGV[14])
local function was_tried(id)
  local at = redis.call("ZSCORE", tried, id)
  return at and tonumber(at) >= tried_since
end

-- A repeated request for a call that already holds an advisor gets that one.
local held = redis.call("HGET", call_key(sid), "advisor")
if held and held ~= "" and on_call(held, sid) then
  return {"advisor", held}
end

local function claim(id)
  -- A waiting caller leaves the queue they wait in (their own team's, even
  -- when another team serves them: overflow).
  local waiting = redis.call("HGET", call_key(sid), "waiting_team")
  if waiting and waiting ~= "" then redis.call("ZREM", wait_key(waiting), sid) end
  redis.call("ZREM", wait_key(team), sid)
  redis.call("ZADD", tried, now, id)
  redis.call("EXPIRE", tried, 86400)
  take_advisor(id, sid, now, lease_until)
  return {"advisor", id}
end

if owner ~= "" and not was_tried(owner)
   and redis.call("HGET", akey(owner), "status") == "available" then
  return claim(owner)
end
local candidates = redis.call("ZRANGE", avail_key(team), 0, -1)
for _, id in ipairs(candidates) do
  if not was_tried(id) then return claim(id) end
end
if may_queue ~= "1" then return {"none", ""} end
local function still_waits(other)
  -- The call holding a number's place still has it: not over, and waiting in its
  -- queue or claimed for an advisor who rings for it (a missed ring puts it back).
  if redis.call("EXISTS", ARGV[19] .. other .. ARGV[20]) == 1 then return false end
  local c = redis.call("HMGET", call_key(other), "waiting_team", "advisor", "answered_by")
  if c[1] and c[1] ~= "" and redis.call("ZSCORE", wait_key(c[1]), other) then return true end
  if not c[2] or c[2] == "" or (c[3] and c[3] ~= "") then return false end
  local adv = redis.call("HMGET", akey(c[2]), "call", "hold")
  return adv[1] == other and adv[2] == "ringing"
end
local mine = redis.call("HMGET", call_key(sid), "one_place", "caller", "waiting_team")
if mine[1] == "1" and not (mine[3] and mine[3] ~= ""
                           and redis.call("ZSCORE", wait_key(mine[3]), sid)) then
  -- One waiting place per number for this call's kind: another call from the
  -- number that still waits keeps it; else this call takes it.
  local place = ARGV[17] .. (mine[2] or "") .. ARGV[18]
  local holder = redis.call("GET", place)
  if holder and holder ~= sid and still_waits(holder) then return {"taken", holder} end
  redis.call("SET", place, sid, "EX", ARGV[21])
end
redis.call("SADD", ARGV[15], team)
redis.call("HSET", call_key(sid), "state", "queued")
-- A caller waits in one team's set, the one their call names: one routed to another
-- team while they wait (another product key reached us for their call) moves there,
-- their wait going on. Left in both, two advisors could be claimed for them, and
-- their end (`waiting_team` only) would leave the other place behind.
local waiting = redis.call("HGET", call_key(sid), "waiting_team")
local moved = waiting and waiting ~= "" and waiting ~= team
              and redis.call("ZREM", wait_key(waiting), sid) == 1
local score = redis.call("ZSCORE", wait_key(team), sid)
if not score then
  -- A caller queued again (their advisor did not answer) keeps their arrival.
  local width = tonumber(ARGV[16])
  local before = tonumber(redis.call("HGET", call_key(sid), "wait_score") or "")
  score = band * width + (before and before % width or now)
  redis.call("ZADD", wait_key(team), score, sid)
  redis.call("HSET", call_key(sid), "waiting_team", team,
             "wait_score", string.format("%d", score))
  if not moved then redis.call("HSET", call_key(sid), "enqueued_at", now) end
end
return {"queued", tostring(redis.call("ZRANK", wait_key(team), sid) + 1)}
"""

_MAKE_AVAILABLE = _LUA_COMMON + r"""
-- ARGV[6] advisor id, [7] expected call ("" = any), [8] now ms,
-- [9] lease until ms, [10] call to skip (the one this advisor just missed),
-- [11] "1" when the advisor asked to be available (API), else a release,
-- [12] overflow: callers at the head of another team's queue who arrived
-- before this time (ms) may be served by a general advisor ("" = none),
-- [13] the set of all teams, [14] the width of a priority band,
-- [15] the team whose advisors serve overflow (general),
-- [16] "wrapup" when the release ends the wrap-up of the expected call,
-- [17] releases only a hold whose lease ran out by this time (ms) ("" = any),
-- [18] when the expected call is to be settled with the release: that call's
-- ended mark's key ("" = not), [19] the set of calls whose log is to be written,
-- [20] "ring" when the release is the end of the advisor's leg for the expected
-- call, a callback (refused unless that leg still rings them), [21] that leg,
-- [22] "1" to offer an idle available advisor the waiting callers again,
-- [23], [24] a call's tried advisors' key, before and after the CallSid,
-- [25] with an offer to an idle advisor: a waiting caller this advisor was rung
-- for at or after this time (ms) is not offered to them ("" = any)
-- [26] "1" when the release ends a ring the advisor let go by with the caller still
-- there (a missed ring), [27] the missed rings in a row that set them away
-- [28] while the desk is closed, the one team whose callbacks are placed (hosting:
-- the outage line is answered 24/7); "" while it is open (every team's)
local id, expected, now = ARGV[6], ARGV[7], tonumber(ARGV[8])
local lease_until, skip, explicit = tonumber(ARGV[9]), ARGV[10], ARGV[11]
local overflow_before, all_teams = tonumber(ARGV[12]), ARGV[13]
local key = akey(id)
if redis.call("EXISTS", key) == 0 then return {"unknown", ""} end
local status = redis.call("HGET", key, "status")
local current = redis.call("HGET", key, "call") or ""
local wrapup = redis.call("HGET", key, "hold") == "wrapup"
if expected ~= "" and (current ~= expected or wrapup ~= (ARGV[16] == "wrapup")) then
  return {"stale", current}
end
if ARGV[17] ~= "" and lease_renewed(id, ARGV[17]) then return {"stale", current} end
if ARGV[20] == "ring" and (redis.call("HGET", key, "hold") ~= "ringing"
                          or not callback_rings(expected, id, ARGV[21])) then
  -- The end of a callback's leg to the advisor, who since took it (talking) or
  -- whose ring is over (another leg, released): not this release's to make.
  return {"stale", current}
end
if ARGV[18] ~= "" and expected ~= "" then
  -- The call the hold held, settled in the same step as the release, so that a
  -- webhook that takes the hold on finds either both done or neither.
  local call = call_key(expected)
  local claimed = redis.call("HGET", call, "advisor") == id
  local state = redis.call("HGET", call, "state")
  local team = redis.call("HGET", call, "waiting_team")
  if not team or team == "" then team = ARGV[15] end
  local score = redis.call("HGET", call, "wait_score")
  local callback_state = redis.call("HGET", call, "callback_state")
  if redis.call("HGET", call, "callback") ~= "1" then
    -- A waiting caller claimed for this advisor and never brought over (the
    -- process that was to redirect them died, before or after it noted the
    -- claim on the call): back to their place.
    if (state == "connecting" or (state == "queued" and claimed))
       and redis.call("EXISTS", ARGV[18]) == 0 then
      return_caller(expected)
    end
  elseif callback_state == "waiting" and claimed then
    -- A callback claimed for this advisor whose leg was never placed (the process
    -- died first): the contact is back in their place, no offer made.
    if score and score ~= "" and not redis.call("ZSCORE", wait_key(team), expected) then
      redis.call("ZADD", wait_key(team), tonumber(score), expected)
    end
    redis.call("HSET", call, "advisor", "")
  elseif callback_rings(expected, id, "") then
    -- The advisor's leg for a callback, ended unanswered: its end came, or it
    -- never did (lost, or before the desk knew the leg) and the hold ran out (a
    -- leg rings no longer than that).
    end_callback_ring(expected, ARGV[15], ARGV[8], ARGV[19])
  elseif ARGV[17] ~= "" and (callback_state == "dialing-contact"
                             or callback_state == "answered") then
    -- A callback the advisor took, whose leg's end never came and whose talk's
    -- hold ran out: over, and its call to be logged.
    redis.call("HSET", call, "callback_state", "done", "ended_at", ARGV[8])
    redis.call("ZADD", ARGV[19], "NX", now / 1000, expected)
  end
end
local chosen = redis.call("HGET", key, "chosen") or ""
local offer = ARGV[22] == "1"
if offer then
  -- Only an advisor available and holding nothing: one who took a call meanwhile,
  -- or chose another status, is left as they are.
  if status ~= "available" or current ~= "" then return {"stale", current} end
elseif explicit == "1" then
  -- The advisor's own choice replaces any earlier one (and the line's "away").
  redis.call("HDEL", key, "chosen", "away", "missed")
  if status == "available" and current ~= "" then return {"available", ""} end
  -- Available already and idle, saying so again: offered the waiting callers as on
  -- any change to available (a callback put back while they idled waits for one).
  if status == "available" then offer = true end
  if current ~= "" and not wrapup then
    -- Still on a call: they become available when it ends, not before.
    redis.call("HSET", key, "after", "available")
    return {status, current}
  end
elseif chosen ~= "" or (status ~= "busy" and redis.call("HGET", key, "after") ~= "available") then
  -- A status the advisor chose (busy, offline) outlives the call it was set
  -- during; so does offline after a restart. The hold is released all the same.
  if chosen ~= "" and status ~= chosen then
    redis.call("HSET", key, "status", chosen, "since", now)
  end
  redis.call("HSET", key, "call", "", "hold", "", "lease", "")
  redis.call("ZREM", LEASES, id)
  return {chosen ~= "" and chosen or status or "offline", ""}
elseif redis.call("HGET", key, "confirming") then
  -- Held to confirm: a Redis restored from a snapshot held them on this call, and
  -- they may have taken another since it ended. The hold is released; they stay
  -- busy until Twilio says they are on no call (`routing.redis_restarts`).
  redis.call("HSET", key, "status", "busy", "since", now, "call", "", "hold", "",
             "lease", "")
  redis.call("ZREM", LEASES, id)
  return {"busy", ""}
end
if ARGV[26] == "1" and redis.call("HINCRBY", key, "missed", 1) >= tonumber(ARGV[27]) then
  -- Away from the desk: offline until they say they are back (`MISSED_RINGS_AWAY`).
  redis.call("HSET", key, "status", "offline", "since", now, "chosen", "offline",
             "away", "missed-rings", "call", "", "hold", "", "lease", "")
  redis.call("HDEL", key, "missed", "after")
  redis.call("ZREM", LEASES, id)
  return {"offline", ""}
end
redis.call("HDEL", key, "after")

local best, best_score, best_team = nil, nil, nil
local rung_since = offer and tonumber(ARGV[25]) or nil
local function rung_lately(sid)
  -- This advisor was rung for the caller lately and did not take them (they may
  -- have stepped away): offered them again only later.
  if not rung_since then return false end
  local at = redis.call("ZSCORE", ARGV[23] .. sid .. ARGV[24], id)
  return at and tonumber(at) >= rung_since
end
local function callback_waits_for_opening(team, sid)
  -- A callback of a team closed now (a contact is not called back at night about a
  -- case the desk serves in its hours): it keeps its place until the desk opens.
  return ARGV[28] ~= "" and team ~= ARGV[28]
    and redis.call("HGET", call_key(sid), "callback") == "1"
end
local function consider(team, overflow_only)
  local head = redis.call("ZRANGE", wait_key(team), 0, 2, "WITHSCORES")
  for i = 1, #head, 2 do
    local sid, score = head[i], tonumber(head[i + 1])
    if sid ~= skip and not rung_lately(sid) and not callback_waits_for_opening(team, sid) then
      local arrived = score % tonumber(ARGV[14])
      if (not overflow_only or arrived <= overflow_before)
         and (best_score == nil or score < best_score) then
        best, best_score, best_team = sid, score, team
      end
      return
    end
  end
end
local mine = {}
for _, team in ipairs(split(redis.call("HGET", key, "teams"))) do
  mine[team] = true
  consider(team, false)
end
if overflow_before and mine[ARGV[15]] then
  for _, team in ipairs(redis.call("SMEMBERS", all_teams)) do
    if not mine[team] then consider(team, true) end
  end
end
if best then
  redis.call("ZREM", wait_key(best_team), best)
  redis.call("HSET", call_key(best), "dequeued_at", now)
  take_advisor(id, best, now, lease_until)
  return {"claimed", best}
end
-- Offered nobody: still available, idle since they were (their turn kept).
if offer then return {"available", ""} end
redis.call("HSET", key, "status", "available", "since", now, "call", "", "hold", "",
           "lease", "")
redis.call("ZREM", LEASES, id)
for _, team in ipairs(split(redis.call("HGET", key, "teams"))) do
  redis.call("ZADD", avail_key(team), now, id)
end
return {"available", ""}
"""

_SET_UNAVAILABLE = _LUA_COMMON + r"""
-- ARGV[6] advisor id, [7] "busy" or "offline", [8] now ms
local id, status, now = ARGV[6], ARGV[7], ARGV[8]
local key = akey(id)
if redis.call("EXISTS", key) == 0 then return "unknown" end
for _, team in ipairs(split(redis.call("HGET", key, "teams"))) do
  redis.call("ZREM", avail_key(team), id)
end
if redis.call("HGET", key, "status") ~= status then
  redis.call("HSET", key, "status", status, "since", now)
end
redis.call("HDEL", key, "away", "missed")
-- Their choice, kept until they change it: the end of a call in progress
-- (or of wrap-up) must not make them available again.
redis.call("HSET", key, "chosen", status)
redis.call("HDEL", key, "after")
return status
"""

_RETURN_TO_QUEUE = _LUA_COMMON + r"""
-- A caller claimed for an advisor could not be brought to them (Twilio kept
-- failing): put the caller back where they were, keeping their place.
-- ARGV[6] call sid, [7] advisor id
local sid, id = ARGV[6], ARGV[7]
if not on_call(id, sid) then return 0 end
return return_caller(sid)
"""

_END_UNHELD_CALLBACK_RING = _LUA_COMMON + r"""
-- The end of an advisor's callback leg that they did not take, when they hold the
-- call no more (their hold ran out, in a previous release): `end_callback_ring`.
-- ARGV[6] advisor id, [7] the call, [8] the leg ("" = whichever), [9] now ms,
-- [10] the team of a caller without one, [11] the set of calls to log
local id, sid = ARGV[6], ARGV[7]
if on_call(id, sid) or not callback_rings(sid, id, ARGV[8]) then return 0 end
end_callback_ring(sid, ARGV[10], ARGV[9], ARGV[11])
return 1
"""

_TAKE_CALLBACK_RING = _LUA_COMMON + r"""
-- The advisor takes the callback their leg rings them for: their hold becomes the
-- talk's and the callback's state says so, in one step, so that the leg's end is
-- never handled between the two.
-- ARGV[6] advisor id, [7] the call, [8] the leg ("" = whichever), [9] lease until
local id, sid, lease_until = ARGV[6], ARGV[7], ARGV[9]
if not on_call(id, sid) then return 0 end
local call = call_key(sid)
if redis.call("HGET", akey(id), "hold") == "talking"
   and redis.call("HGET", call, "callback") == "1"
   and redis.call("HGET", call, "callback_state") == "dialing-contact"
   and (ARGV[8] == "" or redis.call("HGET", call, "callback_leg") == ARGV[8]) then
  return 1  -- taken already: a repeat of this accept (Twilio asked again)
end
if not callback_rings(sid, id, ARGV[8]) then return 0 end
redis.call("HSET", akey(id), "hold", "talking", "lease", lease_until)
redis.call("HDEL", akey(id), "missed")
redis.call("ZADD", LEASES, lease_until, id)
redis.call("HSET", call, "callback_state", "dialing-contact", "whisper", "accepted")
return 1
"""

_WRAP_UP_TAKEN_CALLBACK = _LUA_COMMON + r"""
-- The end of the advisor's leg for a callback they took: their talk's hold becomes
-- wrap-up, unless the contact's phone is known to have gone unanswered (the
-- `<Dial>`'s action wrote `contact_unreached` before it ended any wrap-up of the
-- call). Read in the same step as the hold moves: an action handled at any moment
-- is either read here or finds this wrap-up to end (`routing.callbacks`).
-- ARGV[6] advisor id, [7] the call, [8] lease until (ms)
local id, sid, lease_until = ARGV[6], ARGV[7], ARGV[8]
if not on_call(id, sid) then return "stale" end
local call = call_key(sid)
if redis.call("HGET", call, "contact_unreached") == "1"
   and redis.call("HGET", call, "answered_by") ~= id then
  return "unreached"
end
redis.call("HSET", akey(id), "hold", "wrapup", "lease", lease_until)
redis.call("ZADD", LEASES, lease_until, id)
return "wrapup"
"""

_HOLD_FOR = _LUA_COMMON + r"""
-- Move an advisor's hold on a call on (ringing -> talking, talking -> wrapup).
-- ARGV[6] advisor id, [7] the call, [8] the new hold, [9] lease until
local id, sid, hold, lease_until = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if not on_call(id, sid) then return 0 end
redis.call("HSET", akey(id), "hold", hold, "lease", lease_until)
redis.call("ZADD", LEASES, lease_until, id)
-- Taking a call shows they are at the desk: the missed rings before it are forgotten.
if hold == "talking" then redis.call("HDEL", akey(id), "missed") end
return 1
"""


_RENEW_RING = _LUA_COMMON + r"""
-- The advisor's ring for a call goes on (their phone picked up and hears the whisper,
-- or a waiting caller claimed for them is being dialed): their "ringing" hold's lease
-- runs at least until ARGV[8], never shorter (a talk's or a later renewal's stays).
-- 1 while they ring or talk on the call, else 0 (nothing changed); -1, nothing
-- changed, when ARGV[9] is "1" and they chose busy or offline since (their phone
-- is not to ring: checked in the same step as the renewal).
-- ARGV[6] advisor id, [7] the call, [8] lease until (ms), [9] "1": unless away
local id, sid, lease_until = ARGV[6], ARGV[7], tonumber(ARGV[8])
if not on_call(id, sid) then return 0 end
if ARGV[9] == "1" and (redis.call("HGET", akey(id), "chosen") or "") ~= "" then
  return -1
end
extend_ring(id, lease_until)
return 1
"""


# The advisor rung for a call picked up (`routing.whisper.play_whisper`): in one step,
# while the call still rings them and they still ring or talk on it, their ring's lease
# runs at least until ARGV[8] (as `_RENEW_RING`), the call notes the whisper played
# (unless already accepted), and its hash is returned; else {} and nothing changed.
# ARGV[6] advisor id, [7] the call, [8] lease until (ms)
_PICK_UP = _LUA_COMMON + r"""
local id, sid, lease_until = ARGV[6], ARGV[7], tonumber(ARGV[8])
local call = call_key(sid)
if redis.call("HGET", call, "ringing") ~= id or not on_call(id, sid) then return {} end
extend_ring(id, lease_until)
if redis.call("HGET", call, "whisper") ~= "accepted" then
  redis.call("HSET", call, "whisper", "played")
end
return redis.call("HGETALL", call)
"""


# A Redis restored from a snapshot brings advisors back as the snapshot held them: one
# available and idle then, or holding a call that is over since, may be on a call now
# that Redis no longer knows (or knows at an older step). Every advisor available and
# idle is held busy, out of every available set (so no claim, no offer, no owner's ring
# reaches them); every one holding a call, by no status of their own choosing, is held
# busy once it ends (`_MAKE_AVAILABLE`); both `confirming` since ARGV[7] (ms) and among
# the advisors to confirm (ARGV[8]), in one step; the ids held. ARGV[6] every advisor.
_HOLD_TO_CONFIRM = _LUA_COMMON + r"""
local held = {}
for _, id in ipairs(redis.call("SMEMBERS", ARGV[6])) do
  local a = redis.call("HMGET", akey(id), "status", "call", "chosen")
  local idle = (a[2] or "") == ""
  if a[1] == "available" and idle then
    for _, team in ipairs(split(redis.call("HGET", akey(id), "teams"))) do
      redis.call("ZREM", avail_key(team), id)
    end
    redis.call("HSET", akey(id), "status", "busy", "since", ARGV[7])
  end
  if (a[1] == "available" and idle) or (not idle and (a[3] or "") == "") then
    redis.call("HSET", akey(id), "confirming", ARGV[7])
    redis.call("SADD", ARGV[8], id)
    held[#held + 1] = id
  end
end
return held
"""

# Twilio says the advisor held to confirm is on the live call ARGV[7] (the caller's
# CallSid, the one the desk keys its calls by): they hold it, as a claim does, "ringing"
# or "talking" (ARGV[10]) until ARGV[9] (ms), so its end (its status callback, or the
# open-calls check) frees them as any call's. The call, known at an older step (waiting
# in a queue, ringing someone else) or not at all, is theirs: out of the queue it waited
# in, answered by them when talking, among the open calls (ARGV[11], due at ARGV[12],
# unless there already); a hash made here expires in ARGV[14] s. "held"; "ended" with
# nothing changed when the desk marked that call over (ARGV[13], its end's mark: the
# advisor stays held to confirm); "stale", taken off the advisors to confirm (ARGV[15]),
# when the advisor is held to confirm no longer or holds a call already.
# ARGV[6] advisor id, [8] now (ms)
_HOLD_ON_LIVE_CALL = _LUA_COMMON + r"""
local id, sid, now, hold = ARGV[6], ARGV[7], ARGV[8], ARGV[10]
local key = akey(id)
if not redis.call("HGET", key, "confirming") or (redis.call("HGET", key, "call") or "") ~= "" then
  redis.call("SREM", ARGV[15], id)
  return "stale"
end
if redis.call("EXISTS", ARGV[13]) == 1 then return "ended" end
local call = call_key(sid)
local known = redis.call("EXISTS", call) == 1
local team = redis.call("HGET", call, "waiting_team")
if team and team ~= "" then redis.call("ZREM", wait_key(team), sid) end
take_advisor(id, sid, now, ARGV[9])
redis.call("HSET", key, "hold", hold)
redis.call("HDEL", key, "confirming")
redis.call("SREM", ARGV[15], id)
if hold == "talking" then
  redis.call("HSET", call, "state", "bridged", "answered_by", id, "answered_at", now,
             "whisper", "accepted", "ringing", "")
else
  redis.call("HSET", call, "state", "ringing", "ringing", id, "whisper", "")
end
redis.call("HSET", call, "confirmed_live_at", now)
if not known then redis.call("EXPIRE", call, ARGV[14]) end
redis.call("ZADD", ARGV[11], "NX", ARGV[12], sid)
return "held"
"""

# Twilio says the advisor held to confirm is on no live call: no longer held to confirm
# (taken off the set ARGV[8]). Still held, idle and with no status of their own choosing
# (busy, offline) since, they are available again, idle since ARGV[7] (ms), in the same
# step: 1 (the caller then offers them the waiting callers). Else 0, nothing more
# changed: they chose a status, or set themselves available (and may hold a call by
# now: never released here). ARGV[6] advisor id.
_CONFIRMED_IDLE = _LUA_COMMON + r"""
local id, now = ARGV[6], ARGV[7]
local key = akey(id)
redis.call("SREM", ARGV[8], id)
if not redis.call("HGET", key, "confirming") then return 0 end
redis.call("HDEL", key, "confirming")
local a = redis.call("HMGET", key, "status", "call", "chosen")
if a[1] ~= "busy" or (a[2] or "") ~= "" or (a[3] or "") ~= "" then return 0 end
redis.call("HSET", key, "status", "available", "since", now)
for _, team in ipairs(split(redis.call("HGET", key, "teams"))) do
  redis.call("ZADD", avail_key(team), now, id)
end
return 1
"""


def _run(r: redis.Redis, source: str, *args: object, announce: bool = True) -> object:
    """Run one of the scripts above with the key templates prepended (announced on the
    console's channel unless `announce` is False: a lease renewed moves nobody)."""
    templates = (
        keys.advisor("{}"),
        keys.team_available("{}"),
        keys.team_waiting("{}"),
        keys.call("{}"),
        keys.leases(),
    )
    return script(r, _announcing(source) if announce else source)(
        keys=[], args=[*templates, *args], client=r)


@functools.cache
def _announcing(source: str) -> str:
    """`source` as a function whose result is returned after announcing the change on
    the console's channel: every transition may move an advisor or a queue, and the
    pages re-read. In the script, not a `PUBLISH` of its own: one round trip less on
    every claim and release (see `routing.changes`). Best effort, as `announce_change`:
    `pcall`, so a PUBLISH the server refuses (a Redis user with no right to the
    channel, Redis 7's ACL default) fails no transition, whose writes are done by then.
    The kind announced is `queue` for a caller queued, else `presence`."""
    return (f"local function transition()\n{source}\nend\n"
            "local result = transition()\n"
            # A caller queued changed a queue, not an advisor (an advisor's page
            # ignores those: in a storm they come a hundred a second); "none"
            # and "taken" changed nothing.
            "local kind = 'presence'\n"
            "if type(result) == 'table' and result[1] == 'queued' then kind = 'queue'\n"
            "elseif type(result) == 'table' and (result[1] == 'none' or result[1] == 'taken')"
            " then kind = nil end\n"
            f"if kind then redis.pcall('PUBLISH', '{keys.desk_changes()}', kind) end\n"
            "return result\n")


@dataclass(frozen=True)
class Claim:
    """What happened when a caller asked for an advisor."""

    outcome: str  # "advisor", "queued", "none" or "taken"
    advisor_id: str | None = None
    position: int | None = None
    # "taken": the call from the same number that holds its one waiting place.
    place_holder: str | None = None


@dataclass(frozen=True)
class Release:
    """What happened when an advisor became free."""

    outcome: str  # "claimed", "available", "busy", "offline", "stale", "unknown"
    call_sid: str | None = None


def band_of(priority: str | None) -> int:
    """Queue band of a priority: critical callers are served first."""
    return BANDS.get((priority or "medium").lower(), BANDS["medium"])


def claim_for_caller(
    r: redis.Redis, call_sid: str, *, team: str, owner_id: str | None, now_ms: int,
    lease_ms: int, priority: str | None = "medium", queue_if_none: bool = True,
    retry_after_ms: int | None = None,
) -> Claim:
    """Atomically claim the owner or the longest-idle teammate, or queue the caller.

    Advisors already rung on this call are skipped; with `retry_after_ms`,
    only those rung within that time (a re-offer to a waiting caller). A call whose
    hash has `one_place` set waits only when no other call from its `caller` number
    still waits (in a queue, or claimed for an advisor and ringing, not answered):
    else nothing changes and the outcome is "taken", naming that call.
    """
    place = keys.number_place("{}").split("{}")
    ended = keys.call_ended("{}").split("{}")
    result = _run(
        r, _CLAIM_FOR_CALLER, call_sid, owner_id or "", team, now_ms, now_ms + lease_ms,
        band_of(priority), "1" if queue_if_none else "0", keys.call_tried(call_sid),
        0 if retry_after_ms is None else now_ms - retry_after_ms, keys.teams(), BAND_WIDTH,
        *place, *ended, NUMBER_PLACE_TTL_SECONDS,
    )
    outcome, value = result  # type: ignore[misc]
    if outcome == "advisor":
        return Claim("advisor", advisor_id=value)
    if outcome == "queued":
        return Claim("queued", position=int(value))
    if outcome == "taken":
        return Claim("taken", place_holder=value)
    return Claim("none")


def make_available(
    r: redis.Redis, advisor_id: str, *, now_ms: int, lease_ms: int, expected_call: str = "",
    skip_call: str = "", explicit: bool = False, overflow_ms: int | None = None,
    ending_wrapup: bool = False, expired_by_ms: int | None = None,
    settle_held_call: bool = False, ring_ended_leg: str | None = None,
    offer_idle: bool = False, not_rung_within_ms: int | None = None,
    missed_ring: bool = False,
) -> Release:
    """Free an advisor: claim them for the best waiting caller, else mark them available.

    `expected_call` makes a release idempotent: it only acts while the advisor
    still holds that call, ringing or talking (in its wrap-up with
    `ending_wrapup`). `expired_by_ms` (ms since the epoch) releases only a hold whose
    lease ran out by then: the reconciler's, which must lose to a webhook that moved
    the hold on after it found it expired. Either refusal is outcome "stale".
    `settle_held_call` settles the expected call in the same step: a claimed caller
    never brought over goes back to their place, as does the contact of a claimed
    callback whose leg was never placed; a callback whose leg rang for the advisor
    counts one offer not taken (the contact back in their place, or after the third
    the callback done, ended at `now_ms`, and among the calls to log:
    `jobs.queues.CALLS_TO_LOG`). The reconciler's release and the end of a callback
    leg the advisor did not take use it; the latter gives `ring_ended_leg` (the leg's
    CallSid, "" when not known), and is refused ("stale") unless that leg still
    rings the advisor for the expected call (not taken, not replaced).
    `explicit` is an advisor's own request (API); an advisor available already and
    holding nothing who asks again is offered the waiting callers as `offer_idle` does
    (whoever they missed included: they say they are there).
    `offer_idle` offers an advisor who is available already, holding nothing, the best
    waiting caller as if they had just become available: "claimed", or "available"
    with nothing changed (their idle-since kept), or "stale" when they are not idle
    and available; with `not_rung_within_ms`, a caller this advisor was rung for
    within that many ms (`keys.call_tried`) is passed over for the next in line.
    With `overflow_ms`, a general advisor also serves the head of any other
    team's queue once that caller has waited that long.
    While the desk is closed (`config.hours.is_open` at `now_ms`), a callback of any
    team but hosting's (the outage line is answered 24/7) is offered to nobody: it
    keeps its place, and the callers behind it are offered as if it were not there;
    from the opening, the reconciler's pass offers it (`offer_waiting_callers`).
    `missed_ring`: the release ends a ring the advisor let go by while the caller was
    still there; the `MISSED_RINGS_AWAY`-th in a row (none taken between) sets them
    offline, `away` "missed-rings", until they set a status themselves: "offline".
    """
    outcome, value = _run(  # type: ignore[misc]
        r, _MAKE_AVAILABLE, advisor_id, expected_call, now_ms, now_ms + lease_ms, skip_call,
        "1" if explicit else "0", "" if overflow_ms is None else now_ms - overflow_ms,
        keys.teams(), BAND_WIDTH, GENERAL, "wrapup" if ending_wrapup else "",
        "" if expired_by_ms is None else expired_by_ms,
        keys.call_ended(expected_call) if settle_held_call and expected_call else "",
        CALLS_TO_LOG, "" if ring_ended_leg is None else "ring", ring_ended_leg or "",
        "1" if offer_idle else "0", *keys.call_tried("{}").split("{}"),
        "" if not_rung_within_ms is None else now_ms - not_rung_within_ms,
        "1" if missed_ring else "0", MISSED_RINGS_AWAY,
        "" if hours.is_open(datetime.fromtimestamp(now_ms / 1000, UTC)) else HOSTING,
    )
    return Release(outcome, value or None)


def make_unavailable(r: redis.Redis, advisor_id: str, status: str, *, now_ms: int) -> str:
    """Set an advisor busy or offline by their own request; returns the status or 'unknown'."""
    if status not in ("busy", "offline"):
        raise ValueError(f"not an unavailable status: {status!r}")
    return str(_run(r, _SET_UNAVAILABLE, advisor_id, status, now_ms))


def return_to_queue(r: redis.Redis, call_sid: str, advisor_id: str) -> bool:
    """Put a caller claimed for `advisor_id` back in their waiting set, with their
    original score (same band, same arrival). False when the claim is stale or
    the caller never waited. The advisor still holds the call: release them
    next, through `make_available`."""
    return bool(_run(r, _RETURN_TO_QUEUE, call_sid, advisor_id))


def end_unheld_callback_ring(r: redis.Redis, call_sid: str, advisor_id: str, leg: str,
                             now_ms: int) -> bool:
    """The end of `advisor_id`'s leg `leg` ("" when not known) for the callback
    `call_sid`, not taken, when they no longer hold the call: the contact back in
    their place, or after the third offer the callback done (ended at `now_ms`, ms
    since the epoch) and among the calls to log. One step; False, with nothing
    changed, unless that leg still rings them, to the desk."""
    return bool(_run(r, _END_UNHELD_CALLBACK_RING, advisor_id, call_sid, leg, now_ms,
                     GENERAL, CALLS_TO_LOG))


def take_callback_ring(r: redis.Redis, advisor_id: str, call_sid: str, leg: str,
                       lease_until_ms: int) -> bool:
    """The advisor takes the callback `call_sid` their leg `leg` ("" when not known)
    rings them for: their hold becomes "talking" until `lease_until_ms` (ms since the
    epoch) and the callback "dialing-contact", in one step. True, with nothing
    changed, for a repeat (taken on that leg, the contact not reached yet: Twilio
    asked again and acts on this answer); False, with nothing changed, unless that
    leg rings them for it."""
    return bool(_run(r, _TAKE_CALLBACK_RING, advisor_id, call_sid, leg, lease_until_ms))


def wrap_up_taken_callback(r: redis.Redis, advisor_id: str, call_sid: str,
                           lease_until_ms: int) -> str:
    """The advisor's leg for the callback `call_sid`, which they took, is over: in one
    step, their hold becomes "wrapup" until `lease_until_ms` (ms since the epoch)
    unless the call says the contact was not reached (`contact_unreached`, and not
    answered by them). Returns "wrapup", "unreached" (nothing changed: release them)
    or "stale" (nothing changed: they ring or talk on this call no more)."""
    return str(_run(r, _WRAP_UP_TAKEN_CALLBACK, advisor_id, call_sid, lease_until_ms))


def hold_for(
    r: redis.Redis, advisor_id: str, *, call_sid: str, hold: str, lease_until_ms: int
) -> bool:
    """Move an advisor's hold on a call they ring or talk on (to "talking" or "wrapup");
    False if stale."""
    if hold not in HOLDS:
        raise ValueError(f"not a hold: {hold!r}")
    if not call_sid:
        return False  # holding nothing, there is no hold to move (an idle advisor stays idle)
    return bool(_run(r, _HOLD_FOR, advisor_id, call_sid, hold, lease_until_ms))


def renew_ring(r: redis.Redis, advisor_id: str, call_sid: str, lease_until_ms: int,
               *, unless_away: bool = False) -> int:
    """Keep an advisor's ring for a call held until at least `lease_until_ms` (ms since
    the epoch; a longer lease stays): 1 while they still ring or talk on the call, else
    0; with `unless_away`, -1 (nothing changed) when they chose busy or offline since
    they were claimed, checked in the same step. DESIGN: a claim's lease covers its
    ring, answering extends it; the reconciler frees only a hold whose lease ran out
    (`make_available`'s `expired_by_ms`)."""
    if not call_sid:
        return 0
    return int(_run(r, _RENEW_RING, advisor_id, call_sid, lease_until_ms,  # type: ignore[call-overload]
                    "1" if unless_away else "0", announce=False))


def pick_up(r: redis.Redis, advisor_id: str, call_sid: str, lease_until_ms: int
            ) -> dict[str, str]:
    """The advisor rung for this call picked up: the call's hash (its fields as strings),
    with their ring held until at least `lease_until_ms` (ms since the epoch) and the
    whisper noted as played, in one round trip; {} with nothing changed when the call
    no longer rings them or their hold is gone (released meanwhile: by the reconciler,
    or the caller hung up). DESIGN: answering extends the claim's lease."""
    if not call_sid:
        return {}
    return as_hash(_run(r, _PICK_UP, advisor_id, call_sid, lease_until_ms,  # type: ignore[arg-type]
                        announce=False))


def on_call(r: redis.Redis, advisor_id: str, call_sid: str) -> bool:
    """Whether the advisor rings or talks on this call (its wrap-up does not count)."""
    call, hold = r.hmget(keys.advisor(advisor_id), "call", "hold")
    return bool(call_sid) and call == call_sid and hold != "wrapup"


def advisor_state(r: redis.Redis, advisor_id: str) -> dict[str, str]:
    """The advisor's cached facts and presence, or {} when unknown."""
    return r.hgetall(keys.advisor(advisor_id))  # type: ignore[return-value]


def expired_leases(r: redis.Redis, now_ms: int) -> list[str]:
    """Advisors whose hold has expired (the reconciler frees them)."""
    return list(r.zrangebyscore(keys.leases(), "-inf", now_ms))  # type: ignore[arg-type]


def hold_to_confirm(r: redis.Redis, now_ms: int) -> list[str]:
    """Every advisor available and idle held busy until Twilio confirms they are on no
    live call, and every one holding a call (not busy or offline by choice) held so
    once it ends (`_HOLD_TO_CONFIRM`: out of every available set, `confirming` since
    `now_ms`, ms since the epoch, among `keys.advisors_to_confirm`; `make_available`
    releases such an advisor's hold and leaves them busy), in one step; the ids held.
    For a Redis restored from a snapshot (`routing.redis_restarts`)."""
    return [str(i) for i in _run(r, _HOLD_TO_CONFIRM, keys.advisors(), now_ms,  # type: ignore[union-attr]
                                 keys.advisors_to_confirm())]


def hold_on_live_call(r: redis.Redis, advisor_id: str, call_sid: str, *, now_ms: int,
                      lease_until_ms: int, hold: str, first_check_ms: int,
                      call_ttl_s: int) -> str:
    """The advisor held to confirm is on the live call `call_sid` (the caller's CallSid),
    Twilio says: they hold it (`hold`: "ringing" or "talking") until `lease_until_ms`,
    the call is theirs and open (checked from `first_check_ms` unless already open),
    in one step (`_HOLD_ON_LIVE_CALL`). "held", "ended" (the desk marked that call
    over: nothing changed) or "stale" (no longer held to confirm, or on a call)."""
    if hold not in ("ringing", "talking"):
        raise ValueError(f"not a hold on a live call: {hold!r}")
    return str(_run(r, _HOLD_ON_LIVE_CALL, advisor_id, call_sid, now_ms, lease_until_ms,
                    hold, keys.open_calls(), first_check_ms, keys.call_ended(call_sid),
                    call_ttl_s, keys.advisors_to_confirm()))


def confirmed_idle(r: redis.Redis, advisor_id: str, now_ms: int) -> bool:
    """Twilio says the advisor held to confirm is on no live call: no longer held to
    confirm, and, still held and idle with no status of their own choosing, available
    again, idle since `now_ms` (ms since the epoch), in one step (`_CONFIRMED_IDLE`).
    True then: offer them the waiting callers (`make_available`'s `offer_idle`, which
    leaves them be should they take a call meanwhile)."""
    return bool(_run(r, _CONFIRMED_IDLE, advisor_id, now_ms, keys.advisors_to_confirm()))


def advisors_to_confirm(r: redis.Redis) -> list[str]:
    """The advisors held until Twilio confirms they are on no live call."""
    return sorted(r.smembers(keys.advisors_to_confirm()))  # type: ignore[arg-type]
