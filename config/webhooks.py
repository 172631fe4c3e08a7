"""Where Twilio reaches caseline: the paths of the webhooks caseline itself
names in REST requests (a redirect, a placed call), one copy for the web
layer that serves them and the desk that sends Twilio there.

Part of the external contract (docs/contract.md, "Webhooks"): Twilio is
told these URLs, so a renamed route must change here and nowhere else.
"""

from __future__ import annotations

from urllib.parse import urlencode

PREFIX = "/voice"
# A waiting caller redirected to the advisor just claimed for them.
CONNECT = "/connect"
# A waiting caller redirected back into their queue, so that its waitUrl is asked at
# once (the voicemail offered past CASELINE_MAX_WAIT_SECONDS: `waiting.offer_voicemails`).
HOLD_AGAIN = "/hold-again"
# The advisor's leg of a callback (its TwiML, and its status callback).
CALLBACK_ADVISOR = "/callback/advisor"
CALLBACK_STATUS = "/callback/status"
# A leg of a call moved into its conference (the advisor's, the contact's).
CONFERENCE_JOIN = "/conference/join"
# A colleague's leg dialed into a call's conference: its call-progress events.
CONFERENCE_COLLEAGUE = "/conference/colleague"


def webhook_url(base: str, path: str, **query: str) -> str:
    """The absolute URL of webhook `path` on the service at `base` (its public
    base URL as Twilio reached it), with `query` encoded."""
    url = f"{base.rstrip('/')}{PREFIX}{path}"
    return f"{url}?{urlencode(query)}" if query else url
