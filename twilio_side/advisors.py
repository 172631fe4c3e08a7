"""What each advisor's phone does when the service dials it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

ADVISOR_ACTIONS = ("answer", "no-answer", "busy", "failed", "voicemail")


def _phone_key(number: str) -> str:
    """A number reduced to '+' and digits, for matching."""
    return "".join(ch for ch in number if ch.isdigit() or ch == "+")


@dataclass(frozen=True)
class AdvisorPolicy:
    """What each dialed phone does: answer, no-answer, busy, failed or voicemail.

    `by_number` maps a number to an action, or to a list of actions for its
    successive dials within one call (the last one repeats). `decide_fn(number,
    attempt)` gets the number and how many times it was dialed before in this
    call (0 the first time). "answer" presses `accept_key` at the whisper's
    `<Gather>`; "voicemail" picks up but presses nothing.
    """

    default: str = "answer"
    by_number: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    decide_fn: Callable[[str, int], str] | None = None
    accept_key: str = "1"

    def decide(self, number: str, attempt: int) -> str:
        """The action of `number` on its `attempt`-th dial (0-based) in this call."""
        if self.decide_fn is not None:
            action = self.decide_fn(number, attempt)
        else:
            action = self.default
            wanted = _phone_key(number)
            for key, value in self.by_number.items():
                if _phone_key(key) == wanted:
                    if isinstance(value, str):
                        action = value
                    elif value:
                        action = value[min(attempt, len(value) - 1)]
                    break
        if action not in ADVISOR_ACTIONS:
            raise ValueError(f"advisor action {action!r} is not one of {ADVISOR_ACTIONS}")
        return action

    @classmethod
    def coerce(
        cls,
        value: AdvisorPolicy
        | str
        | Mapping[str, str | Sequence[str]]
        | Callable[[str, int], str]
        | None,
    ) -> AdvisorPolicy:
        """A policy from a policy, an action for every phone, a mapping or a callable."""
        if value is None:
            return cls()
        if isinstance(value, AdvisorPolicy):
            return value
        if isinstance(value, str):
            if value not in ADVISOR_ACTIONS:
                raise ValueError(f"advisor action {value!r} is not one of {ADVISOR_ACTIONS}")
            return cls(default=value)
        if isinstance(value, Mapping):
            return cls(by_number=dict(value))
        if callable(value):
            return cls(decide_fn=value)
        raise TypeError(f"cannot make an AdvisorPolicy from {value!r}")
