"""routing's decisions as TwiML: the one place that words them (with
`config.prompts`) and picks the `ivr.twiml` builder for each."""

from __future__ import annotations

from flask import Response
from twilio.twiml.voice_response import VoiceResponse

from config import hours
from ivr import twiml
from ivr.context import prompts, public_path
from routing import (
    acd,
    callbacks,
    cases,
    conference,
    menu,
    outage,
    survey,
    verification,
    waiting,
)
from routing.whisper import Whisper

# What an unverified caller hears first, by `verification.Unverified.why`.
_WHY = {"locked": ["auth.locked"], "failed-locked": ["auth.failed", "auth.locked"], "": []}
_VERIFIED_BY = {"pin": "whisper.verified_pin",
                "caller-id-attested": "whisper.verified_caller_id_attested",
                "caller-id": "whisper.verified_caller_id"}


# `<Response/>` (every status callback's answer, a bridge's, a queue result's) is one
# fixed document: rendered once, not through ElementTree on every request.
_EMPTY = str(VoiceResponse())


def xml(response: VoiceResponse, status: int = 200) -> Response:
    """A TwiML HTTP response, its URLs under the path Twilio reaches the service at."""
    fixed = not response.verbs and not response.attrs and response.value is None
    if fixed:
        return Response(_EMPTY, status=status, mimetype="text/xml")
    return Response(str(twiml.under(public_path(), response)), status=status,
                    mimetype="text/xml")


def answer(step: object, call_sid: str, advisor_id: str = "") -> Response:
    """The TwiML reply for a decision of `routing` about this call."""
    return xml(_twiml(step, call_sid, advisor_id))


def _twiml(step: object, sid: str, advisor_id: str) -> VoiceResponse:  # noqa: C901
    """One decision, one builder."""
    p = prompts()
    match step:
        case menu.Welcome(name=name, announcement=announcement):
            # Not greeted by name: whom the line serves (families: their school).
            greeting = [p.text("greeting.known", name=name) if name
                        else p.text("greeting.unknown")]
            return twiml.main_menu(p, [*greeting, *announcement_texts(announcement)], attempt=1)
        case menu.TooManyCalls():
            return twiml.goodbye(p, p.text("greeting.too_many_calls"))
        case menu.AskMenu(attempt=attempt, invalid=invalid):
            return twiml.main_menu(p, _texts(invalid and "menu.invalid"), attempt=attempt)
        case menu.AskProduct(attempt=attempt, invalid=invalid, after_hours=after_hours):
            closed = [closed_sentence()] if after_hours else []
            return twiml.ask(p, [*closed, *_texts(invalid and "menu.invalid", "menu.addons")],
                             twiml.url("/voice/product", attempt=attempt),
                             num_digits=1, finish_on_key="")
        case menu.Goodbye():
            return twiml.goodbye(p, p.text("menu.goodbye"))
        case menu.Connect(decision=decision, case_closed=closed, case_not_found=not_found,
                          to_owner=to_owner, case_not_entered=not_entered,
                          product_missed=missed):
            # A closed case: the owner is promised only when the owner is the one rung.
            closed_text = closed and ("case.closed" if to_owner else "case.closed_to_next")
            before = _texts(closed_text, not_found and "case.not_found",
                            not_entered and "case.no_case_number",
                            missed == "invalid" and "menu.invalid",
                            missed == "silence" and "menu.no_choice",
                            (not_found or not_entered or missed) and "case.to_general")
            return twiml.route(p, decision, sid, before)
        case cases.AskCase(after_hours=after_hours, not_found=not_found, attempt=attempt,
                           nothing_entered=not_entered):
            again = not_found or not_entered
            closed = [closed_sentence()] if after_hours and not again else []
            texts = [*closed, *_texts(not_found and "case.not_found",
                                      not_entered and "case.no_case_number", "case.ask")]
            action = "/voice/after-hours/case" if after_hours else "/voice/case"
            return twiml.ask(p, texts, twiml.url(action, attempt=attempt), timeout=10,
                             speech_hints=cases.CASE_SPEECH_HINTS)
        case cases.Voicemail(closed=closed, case_not_found=not_found,
                             case_not_entered=not_entered):
            before = [closed_sentence()] if closed else []
            return twiml.voicemail(p, [*before, *_texts(not_found and "case.not_found",
                                                        not_entered and "case.no_case_number",
                                                        "hours.voicemail")])
        case verification.AskContactId(option=option, attempt=attempt, failed=failed,
                                       nothing_entered=not_entered):
            return twiml.ask(p, _texts(failed and "auth.failed",
                                       not_entered and "auth.no_contact_id", "auth.ask_contact"),
                             twiml.url("/voice/verify/contact", option=option, attempt=attempt),
                             timeout=10)
        case verification.AskPin(option=option, attempt=attempt, nothing_entered=not_entered):
            return twiml.ask(p, _texts(not_entered and "auth.no_pin", "auth.ask_pin"),
                             twiml.url("/voice/verify/pin", option=option,
                                       attempt=attempt or None), timeout=10)
        case verification.Refused(why=why):
            # Never whom: naming a district's contacts would tell any caller who to impersonate.
            return twiml.goodbye_all(p, _texts(*_WHY[why], "auth.refused_generic"))
        case outage.OutageVoicemail(why=why, maintenance=maintenance):
            return twiml.voicemail(p, [*_texts(*_WHY[why]), *([maintenance] if maintenance else []),
                                       *_texts("outage.after_hours_not_hosted")])
        case outage.OutageReport(notices=notices, decision=decision):
            texts = [*announcement_texts(notices.announcement),
                     *([notices.maintenance] if notices.maintenance else []),
                     *_texts(notices.handover and "outage.handover")]
            if decision is None:
                return twiml.ask(p, texts, twiml.url("/voice/outage/route"), num_digits=1,
                                 finish_on_key="", timeout=3)
            return twiml.route(p, decision, sid, texts)
        case waiting.Requeue(decision=decision, attempt=attempt):
            return twiml.route(p, decision, sid, [], queue_attempt=attempt)
        case waiting.QueueFailed(fallback_number=number) if number:
            return twiml.fallback(p, number, hours_words())
        case waiting.QueueFailed():
            return twiml.voicemail(p, _texts("errors.queue_failed_voicemail"))
        case waiting.HoldKey(outcome=outcome):
            return _hold_key(outcome)
        case waiting.HoldCycle():
            return _hold_cycle(step)
        case callbacks.DialContact(number=number, attempt=attempt, retry=retry):
            return twiml.callback_dial(p, number, sid, advisor_id, attempt=attempt,
                                       before=_texts(retry and "routing.callback_retry"))
        case callbacks.ContactUnreached():
            return twiml.goodbye(p, p.text("routing.callback_unreached"))
        case callbacks.CallbackNotDialled():
            return twiml.goodbye(p, p.text("routing.callback_not_dialled"))
        case acd.Nothing():
            return twiml.empty()
        case survey.AskSurvey(question=question):
            intro = _texts("survey.intro") if question == 0 else []
            ask = p.text(f"survey.{survey.QUESTIONS[question]}")
            return twiml.ask(p, [*intro, ask], twiml.url("/voice/survey", q=question),
                             num_digits=1, finish_on_key="")
        case survey.SurveyOver(opted_out=opted_out):
            return twiml.goodbye(p, p.text("survey.opted_out" if opted_out else "survey.thanks"))
        case conference.JoinConference(name=name, role=role):
            return twiml.join_conference(name, sid, role)
        case conference.HoldForConference():
            return twiml.hold_for_conference(p, sid)
        case conference.LeaveConference():
            return twiml.hang_up()
        case (acd.DialAdvisor() | acd.WaitInQueue() | acd.CallFinished() | acd.DialNumber()
              | acd.AlreadyWaiting()):
            return twiml.route(p, step, sid, [])
    raise TypeError(f"no TwiML for {step!r}")


def _texts(*names: str | bool) -> list[str]:
    """The prompts named (a falsy entry: nothing)."""
    p = prompts()
    return [p.text(name) for name in names if isinstance(name, str) and name]


def _hold_key(outcome: str) -> VoiceResponse:
    """A key pressed on hold."""
    p = prompts()
    if outcome == "voicemail":
        return twiml.leave()  # the Enqueue action records the message
    if outcome == "callback":
        return twiml.goodbye(p, p.text("routing.callback_confirmed"))
    if outcome == "no-callback":
        return twiml.say_only(p, [p.text("routing.callback_unavailable")])
    return twiml.empty()  # back to the hold music


def _hold_cycle(cycle: waiting.HoldCycle) -> VoiceResponse:
    """One hold cycle: leave for a free advisor, else position, estimate, music."""
    p = prompts()
    if cycle.leave:
        return twiml.leave()
    texts = []
    if cycle.position and cycle.estimate_seconds is not None:
        texts.append(p.text("routing.queued", position=cycle.position))
        texts.append(estimate_words(cycle.estimate_seconds))
    elif cycle.position:
        # Nobody works the team right now: no estimate, and no "helping other callers".
        texts.append(p.text("routing.queued_nobody_working", position=cycle.position))
    return twiml.wait_music(p, texts, offer_callback=cycle.offer_callback,
                            offer_voicemail=cycle.offer_voicemail)


def announcement_texts(announcement: str | None) -> list[str]:
    """The known-incident announcement, with the policy's advice, while it is active."""
    if not announcement:
        return []
    p = prompts()
    return [p.text("outage.announcement_intro"), announcement,
            p.text("outage.announcement_advice")]


def whisper(found: Whisper | None, call_sid: str, advisor_id: str, *,
            callback: bool = False, action: str = "/voice/whisper/accept") -> Response:
    """What the advisor hears before being bridged (or before a callback dials)."""
    p = prompts()
    if found is None:
        return xml(twiml.goodbye(p, p.text("whisper.gone")))
    about = ("outage report" if found.outage else
             f"{found.product.replace('-', ' ')} question" if found.product else "new case")
    values = {
        "case": " ".join(found.case) or about,
        "district": found.district or "Unknown district",
        "caller": _caller_words(found),
        "priority": found.priority or "medium",
        "menu": about,
    }
    if callback:
        return xml(twiml.whisper(p, p.text("whisper.callback", **values), call_sid, advisor_id,
                                 action="/voice/callback/accept"))
    text = p.text("whisper.intro" if found.case else "whisper.no_case", **values)
    return xml(twiml.whisper(p, text, call_sid, advisor_id, action=action))


def _caller_words(found: Whisper) -> str:
    """Who the caller is and how they were verified, for the advisor."""
    p = prompts()
    if not found.verified_by:
        return p.text("whisper.not_verified")
    return p.text(_VERIFIED_BY[found.verified_by], name=found.contact_name or "a contact")


def estimate_words(seconds: float) -> str:
    """An estimated wait, as a caller would like to hear it."""
    p = prompts()
    minutes = round(seconds / 60)
    if minutes < 1:
        return p.text("routing.estimate_short")
    return p.text("routing.estimate", minutes="1 minute" if minutes == 1 else f"{minutes} minutes")


def hours_words() -> str:
    """The desk's hours, to be spoken inside a sentence."""
    return hours.hours_sentence().rstrip(".")


def closed_sentence() -> str:
    """The desk is closed now; its hours."""
    return prompts().text("hours.closed", hours=hours_words())
