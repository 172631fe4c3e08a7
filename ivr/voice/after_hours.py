"""Outside business hours: the case number before the voicemail (option 1), and
the recorded message of any voicemail. `routing.after_hours` decides."""

from __future__ import annotations

from flask import Response
from twilio.twiml.voice_response import VoiceResponse

from ivr import twiml
from ivr.context import desk, prompts
from ivr.voice.form import call_sid, form, whole_arg
from ivr.voice.hooks import bp
from ivr.voice.render import answer, xml
from jobs.queues import enqueue_recording, enqueue_transcription
from routing import acd, after_hours


@bp.post("/after-hours/case")
def after_hours_case() -> Response:
    """After hours, option 1: the case number, then the voicemail for that case."""
    sid = call_sid()
    return answer(after_hours.enter_case_number(desk(), sid, form("Digits"),
                                                speech=form("SpeechResult", limit=200),
                                                attempt=whole_arg("attempt")), sid)


@bp.post("/recorded")
def recorded() -> Response:
    """The voicemail is recorded: the worker attaches it to the case."""
    sid, p = call_sid(), prompts()
    recording = form("RecordingUrl", 512)
    if recording and acd.note_recording(desk(), sid, recording,
                                        form("RecordingDuration", 8) or "0"):
        # Posted after the call's end (Twilio's order): the log may already exist.
        enqueue_recording(desk().job_redis, sid)
    return xml(twiml.goodbye(p, p.text("hours.voicemail_thanks")))


@bp.post("/transcribed")
def transcribed() -> Response:
    """Twilio's transcription of a voicemail (`transcribeCallback`): the worker puts the
    text on the call's log. A failed transcription leaves the recording as it stands."""
    sid = call_sid()
    if form("TranscriptionStatus") == "completed" and acd.note_transcription(
            desk(), sid, form("TranscriptionText", 4000).strip()):
        enqueue_transcription(desk().job_redis, sid)
    return xml(VoiceResponse())
