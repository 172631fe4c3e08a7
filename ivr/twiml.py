"""TwiML for every step of a call, built with twilio's `VoiceResponse`.

Pure functions: they take prompts and decisions, return a `VoiceResponse`,
and know the service's own URLs (the only place that spells them).
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from twilio.twiml import TwiML
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from config.prompts import Prompts, fallback_text
from routing.acd import (
    AlreadyWaiting,
    CallFinished,
    Decision,
    DialAdvisor,
    DialNumber,
    WaitInQueue,
)
from routing.whisper import KEY_TIMEOUT_SECONDS

# The fallback number's `<Dial>` action (`fallback`): Twilio posts it, from the call,
# when the fallback leg is over, whether or not the caller is still on the line.
FALLBACK_OVER = "/voice/fallback/over"


def url(path: str, **query: object) -> str:
    """A service URL with its query string (relative: Twilio resolves it; `under` puts
    it below PUBLIC_BASE_URL's path)."""
    clean = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(clean)}" if clean else path


def under(prefix: str, response: VoiceResponse) -> VoiceResponse:
    """`response` with each of the service's own URLs ("/voice/menu?attempt=1") moved
    under `prefix`, the path Twilio reaches the service at ("/caseline"; "" at the
    root: nothing changes).

    Twilio resolves a root-relative URL against the scheme and host of the request
    alone, so behind a proxy that serves caseline under a path, "/voice/menu" would
    leave the prefix. A `<Play>` is left as it is: it holds the operator's own URL
    (the hold music, whether "https://..." or root-relative, "/media/hold.mp3" at the
    host's root or "/caseline/media/hold.mp3" already under the prefix), never one of
    the service's."""
    if prefix:
        _move_under(prefix, response)
    return response


def _ours(value: object) -> bool:
    """Whether an attribute's or a verb's value is one of the service's root-relative
    URLs ("//host/..." names another host)."""
    return isinstance(value, str) and value.startswith("/") and not value.startswith("//")


def _move_under(prefix: str, verb: TwiML) -> None:
    """`under`, for one verb and what it holds: every attribute that is a URL to fetch
    (`action`, `url`, `waitUrl`, `statusCallback`, `transcribeCallback`, ...) and the
    URL a `<Redirect>` holds."""
    for key, value in verb.attrs.items():
        if (key in ("action", "url") or key.endswith(("Url", "Callback"))) and _ours(value):
            verb.attrs[key] = prefix + value
    if verb.name == "Redirect" and _ours(verb.value):
        verb.value = prefix + verb.value
    for child in verb.verbs:
        if isinstance(child, TwiML):
            _move_under(prefix, child)


# Characters XML 1.0 does not allow (C0 controls but tab and line ends, U+FFFE/U+FFFF,
# lone surrogates). ElementTree writes them as they are, and a document holding one is
# not XML: Twilio answers it with its application error and hangs up. They reach a
# `<Say>` from text operators paste (the announcement, a name in the directory).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def speakable(text: str) -> str:
    """`text` with every character XML cannot carry turned into a space."""
    return _NOT_XML.sub(" ", text)


def say(response: VoiceResponse | Gather, prompts: Prompts, text: str) -> None:
    """Speak `text` in the configured voice (nothing for empty text); characters no
    TwiML document may hold are spoken as a pause (`speakable`)."""
    if text:
        response.say(speakable(text), voice=prompts.voice, language=prompts.language)


def ask(
    prompts: Prompts,
    texts: list[str],
    action: str,
    *,
    num_digits: int | None = None,
    finish_on_key: str = "#",
    timeout: int = 6,
    then: str | None = None,
    speech_hints: str | None = None,
) -> VoiceResponse:
    """One question: a `<Gather>` speaking `texts`; silence goes to `then` (or the action).

    With `speech_hints`, the caller may also say the answer: Twilio posts it as
    `SpeechResult` (its `<Gather input="dtmf speech">`, US English).
    """
    response = VoiceResponse()
    speech = {"input": "dtmf speech", "hints": speech_hints, "speech_timeout": "auto",
              "language": "en-US"} if speech_hints else {"input": "dtmf"}
    gather = Gather(
        action=action,
        method="POST",
        timeout=timeout,
        finish_on_key=finish_on_key,
        **speech,
        **({"num_digits": num_digits} if num_digits else {}),
    )
    for text in texts:
        say(gather, prompts, text)
    response.append(gather)
    # Silence falls through to here: the same action, without Digits.
    response.redirect(then or action, method="POST")
    return response


def main_menu(prompts: Prompts, before: list[str], attempt: int) -> VoiceResponse:
    """The main menu question (1, 2, 6, 8; * repeats)."""
    return ask(
        prompts,
        [*before, prompts.text("menu.main")],
        url("/voice/menu", attempt=attempt),
        num_digits=1,
        finish_on_key="",
    )


def goodbye(prompts: Prompts, text: str) -> VoiceResponse:
    """Say `text` and hang up."""
    response = VoiceResponse()
    say(response, prompts, text)
    response.hangup()
    return response


def start_over(prompts: Prompts, text: str) -> VoiceResponse:
    """Say `text`, then start the call again from its greeting (`/voice/incoming`)."""
    response = VoiceResponse()
    say(response, prompts, text)
    response.redirect(url("/voice/incoming"), method="POST")
    return response


def goodbye_all(prompts: Prompts, texts: list[str]) -> VoiceResponse:
    """Say each text and hang up."""
    response = VoiceResponse()
    for text in texts:
        say(response, prompts, text)
    response.hangup()
    return response


def voicemail(prompts: Prompts, texts: list[str], max_seconds: int = 120) -> VoiceResponse:
    """Say `texts`, then record a bounded message (ends with # or silence)."""
    response = VoiceResponse()
    for text in texts:
        say(response, prompts, text)
    # Twilio transcribes the message and posts the text to /voice/transcribed, so the
    # advisor who opens the case reads which message is urgent before listening.
    response.record(action=url("/voice/recorded"), method="POST", max_length=max_seconds,
                    finish_on_key="#", play_beep=True, timeout=5, transcribe=True,
                    transcribe_callback=url("/voice/transcribed"))
    say(response, prompts, prompts.text("hours.voicemail_thanks"))
    response.hangup()
    return response


def route(prompts: Prompts, decision: Decision, call_sid: str, before: list[str],
          *, queue_attempt: int = 1) -> VoiceResponse:
    """TwiML for a routing decision: dial an advisor, wait in a queue, or end.

    `queue_attempt` counts the tries of putting this caller in Twilio's queue
    (the `<Enqueue>` action reports a failure with it).
    """
    if isinstance(decision, AlreadyWaiting):
        return voicemail(prompts, [*before, prompts.text("outage.already_waiting")])
    response = VoiceResponse()
    for text in before:
        say(response, prompts, text)
    if isinstance(decision, DialAdvisor):
        dial = Dial(
            action=url("/voice/dial-result", advisor=decision.advisor_id),
            method="POST",
            timeout=decision.ring_seconds,
            answer_on_bridge=True,
        )
        dial.number(
            decision.phone,
            url=url("/voice/whisper", call=call_sid, advisor=decision.advisor_id),
            method="POST",
        )
        response.append(dial)
    elif isinstance(decision, WaitInQueue):
        response.enqueue(
            decision.team,
            wait_url=url("/voice/wait"),
            wait_url_method="POST",
            action=url("/voice/queue-result",
                       attempt=queue_attempt if queue_attempt > 1 else None),
            method="POST",
        )
    elif isinstance(decision, DialNumber):
        dial = Dial(action=url("/voice/oncall-result"), method="POST", timeout=25)
        # The engineer hears a whisper and takes the call with a key, as an advisor does.
        dial.number(decision.number, url=url("/voice/oncall/whisper", call=call_sid),
                    method="POST")
        response.append(dial)
    elif isinstance(decision, CallFinished):
        # After a conversation (an advisor or the on-call engineer hung up first), a
        # caller the survey does not ask hears nothing more (PRODUCT.md, the survey).
        if not decision.answered_by:
            say(response, prompts, prompts.text("routing.goodbye"))
        response.hangup()
    return response


def whisper(
    prompts: Prompts, text: str, call_sid: str, advisor_id: str,
    action: str = "/voice/whisper/accept",
) -> VoiceResponse:
    """What the advisor hears before being bridged; any key accepts."""
    response = VoiceResponse()
    gather = Gather(
        input="dtmf",
        num_digits=1,
        # "Press any key": `#` too. Twilio's default finishOnKey would take `#` as the
        # end of no digits, and the advisor who pressed it as one who did not answer.
        finish_on_key="",
        timeout=KEY_TIMEOUT_SECONDS,
        action=url(action, call=call_sid, advisor=advisor_id),
        method="POST",
    )
    say(gather, prompts, text)
    say(gather, prompts, prompts.text("whisper.accept"))
    response.append(gather)
    # No key (voicemail picked up): hang up the advisor's leg, caller moves on.
    say(response, prompts, prompts.text("whisper.not_accepted"))
    response.hangup()
    return response


def callback_dial(
    prompts: Prompts, number: str, call_sid: str, advisor_id: str, *, attempt: int,
    before: list[str] | None = None,
) -> VoiceResponse:
    """The advisor's callback leg dials the contact (again, after a pause, on a retry)."""
    response = VoiceResponse()
    for text in before or []:
        say(response, prompts, text)
    if attempt > 1:
        response.pause(length=5)
    else:
        say(response, prompts, prompts.text("routing.callback_dialing"))
    dial = Dial(action=url("/voice/callback/dial-result", call=call_sid, advisor=advisor_id,
                           attempt=attempt), method="POST", timeout=25)
    dial.number(number)
    response.append(dial)
    return response


def join_conference(name: str, call_sid: str, role: str) -> VoiceResponse:
    """A leg joins the call's conference; leaving ends it for everyone (the contact's
    leg and the advisor's: nobody is left alone with the colleague)."""
    response = VoiceResponse()
    dial = Dial(action=url("/voice/conference/ended", call=call_sid, role=role), method="POST")
    dial.conference(name, end_conference_on_exit=True, start_conference_on_enter=True,
                    beep=False)
    response.append(dial)
    return response


def hold_for_conference(prompts: Prompts, call_sid: str) -> VoiceResponse:
    """The contact's bridge ended because the call is moving: a sentence, a moment,
    then their own way into the conference (their REST redirect usually comes first)."""
    response = VoiceResponse()
    say(response, prompts, prompts.text("conference.joining"))
    response.pause(length=2)
    response.redirect(url("/voice/conference/join", call=call_sid, role="contact"),
                      method="POST")
    return response


def hang_up() -> VoiceResponse:
    """`<Hangup/>`: this leg is over."""
    response = VoiceResponse()
    response.hangup()
    return response


def leave() -> VoiceResponse:
    """`<Leave/>`: out of the queue; the Enqueue action routes the caller."""
    response = VoiceResponse()
    response.leave()
    return response


def bridge() -> VoiceResponse:
    """An empty document: the advisor's leg is bridged to the caller."""
    return VoiceResponse()


def wait_music(prompts: Prompts, texts: list[str], offer_callback: bool,
               offer_voicemail: bool = False) -> VoiceResponse:
    """What a waiting caller hears for one cycle of the waitUrl (with the keys they
    may press: 1 for a callback, 2 for a voicemail after the longest wait)."""
    response = VoiceResponse()
    offers = ([prompts.text("routing.callback_offer")] if offer_callback else []) + (
        [prompts.text("routing.voicemail_offer")] if offer_voicemail else [])
    if offers:
        gather = Gather(input="dtmf", num_digits=1, timeout=2, action=url("/voice/callback"),
                        method="POST")
        for text in [*texts, *offers]:
            say(gather, prompts, text)
        response.append(gather)
    else:
        for text in texts:
            say(response, prompts, text)
    music = prompts.text("routing.hold_music")
    if music:
        response.play(music)
    return response


def fallback(prompts: Prompts, fallback_number: str | None, hours: str) -> VoiceResponse:
    """When caseline itself fails: a human at the fallback number, or an apology. Said
    in the built-in wording when the prompts cannot give theirs, so a broken prompts
    file never stops the caller reaching the fallback."""
    response = VoiceResponse()
    text = fallback_text(prompts, "errors.fallback") if fallback_number else \
        fallback_text(prompts, "errors.apology", hours=hours)
    if text:
        response.say(speakable(text), voice=fallback_text(prompts, "voice.voice"),
                     language=fallback_text(prompts, "voice.language"))
    if fallback_number:
        # Its action tells the line, once the fallback leg is over, that this call was
        # given the fallback (`FALLBACK_OVER`): the call's own record of it may have
        # failed with Redis, and Twilio's post comes later, from the call itself.
        response.dial(fallback_number, action=FALLBACK_OVER, method="POST")
    else:
        response.hangup()
    return response


def hold_on(prompts: Prompts, text: str, pause_seconds: int) -> VoiceResponse:
    """A hold cycle that could not be served: `text`, then `pause_seconds` s of silence,
    after which Twilio asks the waitUrl again (only verbs waitUrl TwiML allows)."""
    response = VoiceResponse()
    say(response, prompts, text)
    response.pause(length=pause_seconds)
    return response


def say_only(prompts: Prompts, texts: list[str]) -> VoiceResponse:
    """Say `texts` and go on (in a queue: back to the hold music)."""
    response = VoiceResponse()
    for text in texts:
        say(response, prompts, text)
    return response


def empty() -> VoiceResponse:
    """`<Response/>`: nothing more to do."""
    return VoiceResponse()
