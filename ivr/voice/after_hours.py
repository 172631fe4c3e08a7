"""Outside business hours: the case number before the voicemail (option 1), and
the recorded message of any voicemail. `routing.after_hours` decides."""

from __future__ import annotations

import logging

from flask import Response
from twilio.twiml.voice_response import VoiceResponse

from directory.redis_client import redis_unavailable
from ivr import gate, twiml
from ivr.context import desk, prompts
from ivr.voice.form import call_sid, form, whole_arg
from ivr.voice.hooks import bp
from ivr.voice.render import answer, xml
from ivr.voice.status import kept_ends
from jobs.queues import enqueue_recording, enqueue_transcription
from routing import acd, after_hours

log = logging.getLogger(__name__)


@bp.post("/after-hours/case")
def after_hours_case() -> Response:
    """After hours, option 1: the case number, then the voicemail for that case."""
    sid = call_sid()
    return answer(after_hours.enter_case_number(desk(), sid, form("Digits"),
                                                speech=form("SpeechResult", limit=200),
                                                attempt=whole_arg("attempt")), sid)


@bp.post("/recorded")
def recorded() -> Response:
    """The voicemail is recorded: the worker attaches it to the case. Redis unreachable,
    it is kept for this process's retry thread (`keep_voicemail`, from the failure
    reply: the voicemail's own thanks, `ivr.voice.errors`)."""
    sid = call_sid()
    recording = form("RecordingUrl", 512)
    if recording and acd.note_recording(desk(), sid, recording,
                                        form("RecordingDuration", 8) or "0"):
        # Posted after the call's end (Twilio's order): the log may already exist.
        enqueue_recording(desk().job_redis, sid)
    return xml(voicemail_thanks())


def voicemail_thanks() -> VoiceResponse:
    """What a caller hears once their voicemail is recorded (at Twilio: it is not lost
    whatever happens here), also when `/voice/recorded` failed."""
    p = prompts()
    return twiml.goodbye(p, p.text("hours.voicemail_thanks"))


def keep_voicemail(cause: BaseException) -> None:
    """`/voice/recorded` failed: when Redis was unreachable (`redis_unavailable`), keep
    its recording for this process's retry thread (`ivr.voice.kept_ends`), so it still
    reaches the call and its log. Any other failure leaves it to the transcription
    callback, which posts the `RecordingUrl` again (`transcribed`). Never raises: the
    caller's reply must go out whatever happens here."""
    sid, recording = call_sid(), form("RecordingUrl", 512)
    if not recording or not gate.CALL_SID.fullmatch(sid) or not redis_unavailable(cause):
        return  # no recording, no call to put it on (the gate may be what failed)
    try:
        kept_ends().keep_recording(sid, recording, form("RecordingDuration", 8) or "0")
    except Exception:  # noqa: BLE001 - the caller's reply matters more than the record
        log.exception("call %s: its voicemail %s could not be kept", sid, recording)


@bp.post("/transcribed")
def transcribed() -> Response:
    """Twilio's transcription of a voicemail (`transcribeCallback`): the worker puts the
    text on the call's log. A failed transcription leaves the recording as it stands.

    Twilio posts the recording's `RecordingUrl` (and `RecordingSid`) with it, whatever
    the transcription's status: a call with no recording yet (its `<Record>` action
    lost) gets it here, a second way the message reaches the case."""
    sid, recording = call_sid(), form("RecordingUrl", 512)
    if recording and acd.note_transcribed_recording(desk(), sid, recording):
        enqueue_recording(desk().job_redis, sid)
    if form("TranscriptionStatus") == "completed" and acd.note_transcription(
            desk(), sid, form("TranscriptionText", 4000).strip()):
        enqueue_transcription(desk().job_redis, sid)
    return xml(VoiceResponse())
