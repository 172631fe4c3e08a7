"""Settings from the environment (and a `.env` file), as one frozen object.

`Settings.from_env()` is the only place that reads `os.environ`; tests build
their own `Settings(...)`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The account SID when TWILIO_ACCOUNT_SID is unset (local experiments).
UNSET_ACCOUNT_SID = "AC" + "0" * 32


def _read_dotenv(path: Path) -> dict[str, str]:
    """Parse a simple KEY=VALUE `.env` file; missing file means no values."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


@dataclass(frozen=True)
class Settings:
    """Everything caseline reads from its environment."""

    twilio_account_sid: str = UNSET_ACCOUNT_SID
    twilio_auth_token: str | None = None
    # The token Twilio signed webhooks with before a rotation (docs/deploy.md): accepted
    # beside TWILIO_AUTH_TOKEN until it is unset, never used for the REST API.
    twilio_previous_auth_token: str | None = None
    twilio_api_url: str = "https://api.twilio.com"
    public_base_url: str | None = None
    redis_url: str | None = None
    database_url: str = ""
    api_token: str | None = None
    fallback_number: str | None = None
    oncall_number: str | None = None
    wrapup_seconds: int = 30
    # A caller waiting this long for a product or owner team is offered to general too.
    overflow_seconds: int = 120
    insecure_dev: bool = False
    port: int = 8000
    host: str = "127.0.0.1"
    instance_path: Path = field(default_factory=lambda: PROJECT_ROOT / "instance")
    ring_timeout_seconds: int = 20
    # A claim outlives the ring by this margin before the reconciler frees it.
    lease_margin_seconds: int = 30
    # Longest a routed call may hold an advisor without an end callback: Twilio ends
    # a <Dial> after four hours at most (its default timeLimit, counted from the
    # dial), and the hold, counted from the accept, outlasts it with a margin.
    talk_lease_seconds: int = 4 * 3600 + 10 * 60
    # When a contact's number identifies the caller without a PIN (docs/contract.md,
    # "Who is calling"): "attested" (SHAKEN/STIR full attestation), "any", "never".
    caller_id_trust: str = "attested"
    # Longest time in a queue before the caller is offered a voicemail.
    max_wait_seconds: int = 1200
    # The limit on new calls from one number (docs/contract.md, "Too many calls from
    # one number"): at most this many calls taken from a number in any rolling window
    # of `calls_per_number_window_seconds`; a call beyond them is refused politely.
    # 0 (either): no limit. Generous: it is to stop a machine, not staff (a district's
    # shared PBX number in an outage, acceptance and load tests from a few numbers).
    calls_per_number: int = 100
    calls_per_number_window_seconds: int = 600
    # Console event streams one web process holds at once: each holds a gunicorn thread,
    # so a few are left for webhooks; pages beyond it poll (CASELINE_CONSOLE_STREAMS).
    console_streams: int = 2
    # HMAC key mixed into new PIN hashes (CASELINE_PIN_PEPPER); kept out of repr and logs.
    pin_pepper: str | None = field(default=None, repr=False)
    # Signs the console's CSRF tokens (CASELINE_SECRET_KEY); unset: a random key kept in
    # the instance folder, shared by every web process there (ivr.console.secret_key).
    secret_key: str | None = field(default=None, repr=False)
    # The operators' prompts file (CASELINE_PROMPTS); None: the shipped config/prompts.toml.
    prompts_path: Path | None = None
    # For `caseline call` only: the REST emulator that delivers redirects to the terminal
    # caller (CASELINE_EMULATOR_URL); None: TWILIO_API_URL unless it is Twilio's.
    emulator_url: str | None = None

    @classmethod
    def from_env(
        cls, environ: dict[str, str] | None = None, dotenv: Path | None = None
    ) -> Settings:
        """Build settings from `environ` (default `os.environ`) over `.env` (`dotenv`,
        default `.env` in the working directory): every variable is read the same way,
        the environment winning over the file. Raises SettingsError naming a variable
        whose value caseline cannot use.

        CASELINE_INSECURE_DEV too (PRODUCT: configuration comes from the environment,
        a `.env` file read if present): what keeps a forgotten file from turning off
        signature checks in production is elsewhere. It lets unsigned webhooks through
        only while TWILIO_AUTH_TOKEN is unset, and `caseline serve` refuses to listen
        on any address but loopback with it (`caseline.server.refusal`).
        """
        real = dict(os.environ if environ is None else environ)
        env = dict(_read_dotenv(dotenv or Path.cwd() / ".env"))
        env.update(real)

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        instance = Path(get("CASELINE_INSTANCE_PATH") or PROJECT_ROOT / "instance")
        return cls(
            twilio_account_sid=get("TWILIO_ACCOUNT_SID") or cls.twilio_account_sid,
            twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
            twilio_previous_auth_token=get("TWILIO_PREVIOUS_AUTH_TOKEN"),
            twilio_api_url=get("TWILIO_API_URL") or cls.twilio_api_url,
            public_base_url=_public_base_url(get("PUBLIC_BASE_URL")),
            redis_url=get("REDIS_URL"),
            database_url=get("DATABASE_URL") or f"sqlite:///{instance / 'caseline.db'}",
            api_token=get("CASELINE_API_TOKEN"),
            fallback_number=get("CASELINE_FALLBACK_NUMBER"),
            oncall_number=get("CASELINE_ONCALL_NUMBER"),
            wrapup_seconds=_int(get, "CASELINE_WRAPUP_SECONDS", 30),
            overflow_seconds=_int(get, "CASELINE_OVERFLOW_SECONDS", 120),
            insecure_dev=get("CASELINE_INSECURE_DEV") == "1",
            port=_port(get("PORT")),
            host=get("HOST") or "127.0.0.1",
            instance_path=instance,
            caller_id_trust=_choice(get("CASELINE_CALLER_ID_TRUST"), CALLER_ID_TRUST,
                                    "CASELINE_CALLER_ID_TRUST"),
            max_wait_seconds=_int(get, "CASELINE_MAX_WAIT_SECONDS", 1200),
            calls_per_number=_int_within(get, "CASELINE_CALLS_PER_NUMBER", 100),
            calls_per_number_window_seconds=_int_within(
                get, "CASELINE_CALLS_PER_NUMBER_WINDOW_SECONDS", 600,
                MAX_CALLS_PER_NUMBER_WINDOW_SECONDS),
            console_streams=_int(get, "CASELINE_CONSOLE_STREAMS", 2),
            pin_pepper=get("CASELINE_PIN_PEPPER"),
            secret_key=get("CASELINE_SECRET_KEY"),
            prompts_path=Path(prompts) if (prompts := get("CASELINE_PROMPTS")) else None,
            emulator_url=get("CASELINE_EMULATOR_URL"),
        )

    def with_changes(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests, command-line flags)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def account_sid_configured(self) -> bool:
        """Whether TWILIO_ACCOUNT_SID names a real account (webhooks must carry it)."""
        return self.twilio_account_sid != UNSET_ACCOUNT_SID

    @property
    def lease_seconds(self) -> int:
        """How long a claim holds an advisor before it may be reclaimed."""
        return self.ring_timeout_seconds + self.lease_margin_seconds


CALLER_ID_TRUST = ("attested", "any", "never")
# The longest rolling window of the limit on new calls from one number: a week. Far
# longer is a typo, and past ~9.2e15 s Redis cannot expire the window's key, so the
# script that opens every call would fail and every caller hear the fallback number.
MAX_CALLS_PER_NUMBER_WINDOW_SECONDS = 7 * 24 * 3600


class SettingsError(ValueError):
    """A setting with a value caseline cannot use; the message names it and its value."""


def _choice(value: str | None, choices: tuple[str, ...], name: str) -> str:
    """One of `choices` (the first when unset); a clear error naming the variable."""
    if value is None:
        return choices[0]
    if value.strip().lower() not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value.strip().lower()


def _int(get: Callable[[str], str | None], name: str, default: int) -> int:
    """The whole-number setting `name` (a negative one counts as 0), the default when
    unset; a SettingsError naming it and its value otherwise."""
    value = get(name)
    if value is None:
        return default
    try:
        return max(0, int(value))
    except ValueError:
        raise SettingsError(f"{name} must be a whole number; got {value!r}") from None


def _int_within(get: Callable[[str], str | None], name: str, default: int,
                maximum: int | None = None) -> int:
    """The whole-number setting `name` from 0 to `maximum` (None: no maximum), the
    default when unset; a SettingsError naming it and its value otherwise. For the
    settings of a safeguard, where a negative value counted as 0 would turn it off
    silently, and a value past `maximum` would break it."""
    value = _int(get, name, default)
    raw = get(name)
    if raw is not None and (int(raw) < 0 or (maximum is not None and value > maximum)):
        bound = f"from 0 to {maximum}" if maximum is not None else "0 or more"
        raise SettingsError(f"{name} must be a whole number {bound}; got {raw!r}")
    return value


def _port(value: str | None) -> int:
    """PORT, from 1 to 65535 (8000 when unset); a SettingsError naming it and its value
    otherwise. Not "a negative one counts as 0" as other whole numbers: port 0 is any
    free port, one nobody (Twilio, the load balancer) would know to reach."""
    if value is None:
        return 8000
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise SettingsError(f"PORT must be a whole number from 1 to 65535; got {value!r}")
    return port


# http(s)://host[:port][/path]: no user, query or fragment, nothing blank.
_PUBLIC_BASE_URL = re.compile(r"https?://[^/?#@\s]+(/[^?#\s]*)?", re.IGNORECASE)


def _public_base_url(value: str | None) -> str | None:
    """PUBLIC_BASE_URL, when it is one Twilio can be sent to and signatures checked over:
    http(s)://host[:port][/path], a trailing slash allowed. Anything else (a query, a
    fragment, no scheme, a user, a bad port) would start a service whose every webhook
    answers 403: a SettingsError naming it and its value (a password in it hidden)."""
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        usable = bool(_PUBLIC_BASE_URL.fullmatch(value) and parts.hostname
                      and (parts.port is None or parts.port > 0))
    except ValueError:  # a port that is not a number from 0 to 65535
        usable = False
    if not usable:
        shown = re.sub(r"//[^/]*@", "//...@", value)
        raise SettingsError(f"PUBLIC_BASE_URL must be http(s)://host[:port][/path] "
                            f"(no query or fragment); got {shown!r}")
    return value
