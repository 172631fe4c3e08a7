"""The advisor's hand on the console during a `caseline call`: once the caller is
connected, add a colleague through the operators' API (what the console's "Add
colleague" does), so the terminal shows the call moving into a conference."""

from __future__ import annotations

from collections.abc import Callable

import requests

from twilio_side import Event


class ColleagueAdder:
    """Adds `number` to the call the moment it is connected (once), as its advisor would.

    `say` prints one line to the terminal; `api_token` is `CASELINE_API_TOKEN`.
    Network or API failures are printed, never raised: the call goes on.
    """

    def __init__(self, base_url: str, api_token: str, number: str,
                 say: Callable[[str], None], timeout: float = 10.0) -> None:
        """Ready to act on the first `connect` event."""
        self.base_url = base_url.rstrip("/")
        self.number = number
        self.say = say
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {api_token}"}
        self.done = False
        self.added = False

    def on_event(self, event: Event, call_sid: str) -> None:
        """On the caller's `connect` event: find the call's advisor, add the colleague."""
        if event.kind != "connect" or self.done:
            return
        self.done = True
        try:
            roster = requests.get(f"{self.base_url}/api/advisors", headers=self.headers,
                                  timeout=self.timeout)
            roster.raise_for_status()
            advisor = next((a["id"] for a in roster.json() if a.get("call_sid") == call_sid),
                           None)
            if advisor is None:
                self.say("(no advisor is on this call: no colleague added)")
                return
            answer = requests.post(f"{self.base_url}/api/advisors/{advisor}/colleague",
                                   json={"phone": self.number}, headers=self.headers,
                                   timeout=self.timeout)
        except (requests.RequestException, ValueError) as exc:
            self.say(f"(could not add the colleague: {exc})")
            return
        if answer.status_code == 201:
            self.added = True
            self.say(f"(advisor {advisor} adds colleague {self.number} from the console)")
        else:
            reason = answer.json().get("error") if answer.content else answer.status_code
            self.say(f"(advisor {advisor} could not add colleague {self.number}: {reason})")
