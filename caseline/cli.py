"""`caseline`: the same commands a person, the Procfile and the tests run."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from config.logs import install_phone_masking
from config.settings import Settings, SettingsError
from directory.redis_client import connect_redis, describe_redis_url, raw_twin

if TYPE_CHECKING:
    from sqlalchemy import Engine


def _settings() -> Settings:
    """Settings from the environment and `.env`; a bad one exits 2 naming the variable
    and its value (an operator's mistake, not a traceback): docs/contract.md,
    Configuration."""
    try:
        return usable(Settings.from_env())
    except SettingsError as exc:
        click.echo(f"caseline: {exc}", err=True)
        sys.exit(2)


def usable(settings: Settings) -> Settings:
    """`settings` with its phone numbers in E.164, once the adapters can use what they
    are given: REDIS_URL and DATABASE_URL in a form they connect with (nothing is
    contacted here), the fallback and on-call numbers dialable. A SettingsError naming
    the variable and its value (a password in a URL hidden) otherwise. config/ cannot
    judge these: the rules live in the adapters (`directory`), which it never imports."""
    from directory.db import DatabaseUrlError, engine_url
    from directory.phones import normalize_phone
    from directory.redis_client import RedisUrlError, check_redis_url

    if settings.redis_url:
        try:
            check_redis_url(settings.redis_url)
        except RedisUrlError as exc:
            raise SettingsError(f"REDIS_URL {hide_password(settings.redis_url)!r} cannot be "
                                f"used: {exc}") from None
    try:
        engine_url(settings.database_url)
    except DatabaseUrlError as exc:
        raise SettingsError(f"DATABASE_URL {hide_password(settings.database_url)!r} cannot "
                            f"be used: {exc}") from None
    numbers = {}
    for field, variable in (("fallback_number", "CASELINE_FALLBACK_NUMBER"),
                            ("oncall_number", "CASELINE_ONCALL_NUMBER")):
        raw = getattr(settings, field)
        if raw is None:
            continue
        # Dialed as it stands in TwiML when all else fails: a typo would surface only
        # then, as a call Twilio cannot place (PRODUCT: an E.164 number).
        number = normalize_phone(raw)
        if number is None:
            raise SettingsError(f"{variable} must be a dialable phone number, E.164 "
                                f"(+16515550100); got {raw!r}")
        numbers[field] = number
    return settings.with_changes(**numbers)


def hide_password(url: str) -> str:
    """`url` with the password of its user part (user:password@) shown as ***."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def _check_prompts(settings: Settings) -> None:
    """Exit 2 with one line naming the prompts file (CASELINE_PROMPTS, else the shipped
    one), the line and the problem when callers could not be spoken to from it: the
    contract's rule for a setting caseline cannot use (docs/contract.md, Configuration)."""
    from config.prompts import PromptsError, check_prompts_file

    try:
        check_prompts_file(settings.prompts_path)
    except PromptsError as exc:
        click.echo(f"caseline: {exc}", err=True)
        sys.exit(2)


def _require_twilio_side(command: str) -> None:
    """Exit with a clear message when `twilio_side` (the simulated Twilio) is not installed.

    It is development and test tooling, installed by `make` from the checkout;
    caseline's own wheel leaves it out, so a production install has no `caseline call`.
    """
    try:
        import twilio_side  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "twilio_side":
            raise
        click.echo(f"caseline {command}: needs the simulated Twilio (the twilio_side package), "
                   "which is development and test tooling, not part of caseline's install. "
                   "From a checkout: `make run` (or `make test`) installs it, or "
                   "`pip install -e ./twilio_side`.", err=True)
        sys.exit(2)


def _migrated_engine(settings: Settings) -> Engine:
    """The database's engine, its schema brought to the newest migration (created when
    empty); exits 1 naming the database and what is wrong when that cannot be done."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from directory.db import SchemaError, ensure_schema, make_engine

    engine = make_engine(settings.database_url)
    try:
        ensure_schema(engine)
    except (SchemaError, SQLAlchemyError) as exc:
        engine.dispose()
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        click.echo(f"caseline: the database {where} cannot be brought up to date: {exc}",
                   err=True)
        sys.exit(1)
    return engine


def _redis_url(settings: Settings) -> str:
    """REDIS_URL, or the embedded server (started if needed)."""
    if settings.redis_url:
        return settings.redis_url
    from caseline.embedded_redis import ensure_embedded

    return ensure_embedded(settings.instance_path)


@click.group()
def main() -> None:
    """caseline: the support line that routes by case number."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # No log line of ours, RQ's or Twilio's client prints a whole phone number.
    install_phone_masking()
    # twilio's client logs every REST request at INFO (a dozen lines each).
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    # Alembic says what it loads at INFO before every command's own answer.
    logging.getLogger("alembic").setLevel(logging.WARNING)


@main.group()
def directory() -> None:
    """The directory of districts, contacts, advisors and cases."""


@directory.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def directory_load(file: Path) -> None:
    """Upsert a directory document in one transaction (all or nothing)."""
    import redis

    from directory import DirectoryError, load_directory
    from directory.db import make_session_factory
    from directory.validation import json_object

    try:
        # utf-8-sig: a spreadsheet's or PowerShell's export may begin with a byte order mark.
        # json_object: a field named twice is a problem of its record, not a silent last-wins.
        document = json.loads(file.read_text(encoding="utf-8-sig"), object_pairs_hook=json_object)
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON, a 5,000-digit number
        click.echo(f"{file}: cannot read a JSON document: {exc}", err=True)
        sys.exit(2)
    except RecursionError:
        click.echo(f"{file}: cannot read a JSON document: nested too deeply", err=True)
        sys.exit(2)
    settings = _settings()
    engine = _migrated_engine(settings)
    client = connect_redis(_redis_url(settings))
    try:
        counts = load_directory(document, make_session_factory(engine), client,
                                datetime.now(UTC), pepper=settings.pin_pepper)
    except redis.RedisError as exc:
        # Before the commit (`load_directory` drops what it changes from the cache first).
        click.echo(f"{file}: Redis cannot be written ({type(exc).__name__}: {exc}); nothing "
                   "was changed", err=True)
        sys.exit(1)
    except DirectoryError as exc:
        click.echo(f"{file}: {exc.bad_records} bad record(s), {len(exc.problems)} problem(s); "
                   "nothing was changed:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    finally:
        client.close()
        engine.dispose()
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    click.echo(f"loaded {file}: {summary}")


def prepare_service(settings: Settings) -> str:
    """Create or migrate the database, start Redis if embedded, warm the cache, put back
    the pending callbacks Redis lost."""
    from directory import cache_directory
    from directory.db import make_session_factory
    from routing.redis_restarts import remember_redis, restore_pending_callbacks
    from routing.upgrade import index_open_calls, keep_pending_callbacks, upgrade_wrapups

    url = _redis_url(settings)
    logging.getLogger("caseline").info("Redis: %s", describe_redis_url(url))
    engine = _migrated_engine(settings)
    client = connect_redis(url)
    session_factory = make_session_factory(engine)
    cache_directory(session_factory, client, datetime.now(UTC))
    # Holds and jobs the previous release left in Redis, in this release's shape.
    job_redis = raw_twin(client)
    now_ms = int(time.time() * 1000)
    upgrade_wrapups(client, job_redis, now_ms)
    index_open_calls(client, now_ms)
    keep_pending_callbacks(client)
    # Callbacks promised that a Redis started empty (the embedded one keeps nothing) or
    # from an older snapshot lost: back in their queues, each once however many
    # processes start together.
    restore_pending_callbacks(client, session_factory, now_ms)
    # The Redis served from now: a snapshot of it restored later is told by this.
    remember_redis(client)
    job_redis.close()
    client.close()
    engine.dispose()
    return url


@main.command()
@click.option("--host", default=None, help="Address to listen on (HOST).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on (PORT).")
# Measured (docs/benchmarks.md, bench/explore.py settings-ab): one gthread process per
# core with 4 threads beat 2 x 8 on two cores (1,130 vs 999 req/s, p99 23 vs 54 ms).
@click.option("--workers", type=int, default=lambda: len(os.sched_getaffinity(0)),
              show_default="one per core", help="Web processes.")
@click.option("--threads", type=int, default=4, show_default=True, help="Threads per process.")
@click.option("--insecure-dev", is_flag=True,
              help="Accept UNSIGNED webhooks when TWILIO_AUTH_TOKEN is unset (local "
                   "experiments; loopback addresses only).")
def serve(host: str | None, port: int | None, workers: int, threads: int,
          insecure_dev: bool) -> None:
    """Run the web service under gunicorn."""
    from caseline.server import (
        account_sid_warning,
        prepare_metrics_dir,
        refusal,
        run_gunicorn,
        unsigned_warning,
    )

    settings = _settings()
    settings = settings.with_changes(
        host=host or settings.host, port=port or settings.port,
        insecure_dev=insecure_dev or settings.insecure_dev,
    )
    problem = refusal(settings)
    if problem:
        click.echo(f"caseline serve: {problem}", err=True)
        sys.exit(2)
    _check_prompts(settings)
    log = logging.getLogger("caseline.serve")
    if settings.insecure_dev and not settings.twilio_auth_token:
        log.warning("*** INSECURE DEV MODE: webhooks on %s:%s accept UNSIGNED requests; "
                    "never expose this service ***", settings.host, settings.port)
    elif settings.insecure_dev:
        log.warning("insecure dev mode asked for, but TWILIO_AUTH_TOKEN is set: "
                    "webhook signatures are checked")
    for warning in (unsigned_warning(settings), account_sid_warning(settings)):
        if warning:
            log.warning(warning)
    metrics_dir = prepare_metrics_dir(settings.instance_path)
    log.info("metrics of every web process add up in %s", metrics_dir)
    master = os.getpid()
    try:
        redis_url = prepare_service(settings)
        run_gunicorn(settings.with_changes(redis_url=redis_url), workers=workers,
                     threads=threads)
    finally:
        # Stopped, or never bound: nobody scrapes these figures any more. Only the
        # master: a gunicorn worker that exits (recycled, timed out) leaves through
        # here too, with SystemExit, while the others still count in the folder.
        if os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@main.command()
@click.option("--burst", is_flag=True, help="Work until the queues are empty, then exit.")
@click.option("--nice", type=click.IntRange(0, 19), default=None,
              help="Run at least this much lower than the web (Linux nice; 0 keeps the "
                   "priority it starts with). Default: 10 (caseline.work.WORKER_NICE).")
def worker(burst: bool, nice: int | None) -> None:
    """Run the RQ worker (call logs, wrap-up ends) and the reconciler's schedule."""
    from caseline.server import rest_token_warning
    from caseline.work import WORKER_NICE, run_worker

    settings = _settings()
    warning = rest_token_warning(settings)
    if warning:
        logging.getLogger("caseline.worker").warning(warning)
    redis_url = prepare_service(settings)
    run_worker(settings.with_changes(redis_url=redis_url), burst=burst,
               nice=WORKER_NICE if nice is None else nice)


@main.group()
def contacts() -> None:
    """Authorized contacts."""


@contacts.command("flag-inactive")
def contacts_flag_inactive() -> None:
    """Flag contacts inactive for 180 days (what the daily job does), now."""
    from directory.db import make_session_factory
    from workers.contacts import flag_inactive_contacts

    settings = _settings()
    engine = _migrated_engine(settings)
    flagged = flag_inactive_contacts(make_session_factory(engine), datetime.now(UTC))
    for contact_id in flagged:
        click.echo(f"flagged inactive: contact {contact_id}")
    click.echo(f"{len(flagged)} contact(s) newly flagged for deactivation")


@contacts.command("unlock")
@click.argument("contact_id")
def contacts_unlock(contact_id: str) -> None:
    """Lift a contact's PIN lockout (five failed PINs within 24 hours)."""
    from directory.db import make_session_factory
    from routing.lockout import unlock_contact

    settings = _settings()
    engine = _migrated_engine(settings)
    client = connect_redis(_redis_url(settings))
    was_locked = unlock_contact(client, make_session_factory(engine), contact_id,
                                datetime.now(UTC))
    client.close()
    engine.dispose()
    if was_locked is None:
        click.echo(f"no contact {contact_id}", err=True)
        sys.exit(1)
    click.echo(f"contact {contact_id}: PIN unlocked" if was_locked
               else f"contact {contact_id}: PIN was not locked (its failures are forgotten)")


@main.group()
def advisors() -> None:
    """Advisors' console accounts."""


@advisors.command("set-password")
@click.argument("advisor_id")
@click.option("--supervisor", is_flag=True, help="The account may open the wallboard.")
def advisors_set_password(advisor_id: str, supervisor: bool) -> None:
    """Set an advisor's console password (asked twice, never echoed); ends every
    console session they have and lifts a lockout."""
    import redis

    from directory.accounts import MIN_PASSWORD_LENGTH, is_advisor, set_password
    from directory.db import make_session_factory
    from routing.sign_in import unlock

    settings = _settings()
    engine = _migrated_engine(settings)
    if not is_advisor(make_session_factory(engine), advisor_id):  # before asking anything
        engine.dispose()
        click.echo(f"no advisor {advisor_id} in the directory", err=True)
        sys.exit(1)
    password = click.prompt(f"Password for {advisor_id} (at least {MIN_PASSWORD_LENGTH} "
                            "characters)", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        engine.dispose()
        click.echo(f"a password has at least {MIN_PASSWORD_LENGTH} characters", err=True)
        sys.exit(2)
    client = connect_redis(_redis_url(settings))
    try:
        done = set_password(make_session_factory(engine), client, advisor_id, password,
                            supervisor=supervisor)
        if done:
            unlock(client, advisor_id)
    except redis.RedisError as exc:
        click.echo(f"advisor {advisor_id}: console password set, but Redis did not answer "
                   f"({exc}): their console sessions may still stand; run this again once "
                   "it answers", err=True)
        sys.exit(1)
    finally:
        client.close()
        engine.dispose()
    if not done:
        click.echo(f"no advisor {advisor_id} in the directory", err=True)
        sys.exit(1)
    role = "supervisor" if supervisor else "advisor"
    click.echo(f"advisor {advisor_id}: console password set ({role}), signed out everywhere")


@advisors.command("sign-out")
@click.argument("advisor_id")
def advisors_sign_out(advisor_id: str) -> None:
    """Sign an advisor out of the console everywhere: every session they have ends."""
    from directory.accounts import end_sessions, find_account
    from directory.db import make_session_factory

    settings = _settings()
    engine = _migrated_engine(settings)
    account = find_account(make_session_factory(engine), advisor_id)
    engine.dispose()
    if account is None:
        click.echo(f"advisor {advisor_id} has no console account", err=True)
        sys.exit(1)
    client = connect_redis(_redis_url(settings))
    try:
        end_sessions(client, advisor_id)
    finally:
        client.close()
    click.echo(f"advisor {advisor_id}: signed out of the console everywhere")


@main.command("call")
@click.option("--from", "from_number", required=True, metavar="NUMBER",
              help="The caller ID (e.g. +16125550101).")
@click.option("--keys", default=None,
              help='Run unattended: the keys of each question, e.g. "1 2024117#" '
                   '("wait:1" answers a question heard while waiting in a queue).')
@click.option("--advisor", type=click.Choice(["answer", "no-answer", "busy", "voicemail"]),
              default=None, help="What every dialed advisor does (default: ask, or answer).")
@click.option("--expect", type=click.Choice(["advisor", "queue", "voicemail", "hangup"]),
              default=None, help="Exit 0 only if the call ends this way (else 1).")
@click.option("--url", default=None,
              help="Where to send the requests (PUBLIC_BASE_URL, else "
                   "http://127.0.0.1:$PORT); signed over PUBLIC_BASE_URL when it is set.")
@click.option("--token", default=None, help="Auth token to sign with (TWILIO_AUTH_TOKEN).")
@click.option("--to", "to_number", default=None, metavar="NUMBER",
              help="The number called (the support line).")
@click.option("--max-wait", type=float, default=None,
              help="Seconds to wait in a queue before hanging up (default 300).")
@click.option("--emulator", default=None,
              help="The Twilio REST emulator that delivers redirects (CASELINE_EMULATOR_URL).")
@click.option("--attestation", type=click.Choice(["A", "B", "C", "failed", "none"]),
              default="A", show_default=True,
              help="The SHAKEN/STIR attestation of the caller ID (Twilio's StirVerstat).")
@click.option("--hangup", type=click.Choice(["caller", "advisor"]), default="caller",
              show_default=True,
              help="Who ends a connected call (advisor: an eligible contact hears the survey).")
@click.option("--colleague", default=None, metavar="NUMBER",
              help="Once connected, the advisor adds this colleague from the console "
                   "(needs CASELINE_API_TOKEN): the call moves into a conference.")
@click.option("--on-call", type=float, default=None, metavar="SECONDS",
              help="Real seconds a connected caller stays on the line (default 2 with "
                   "--colleague, else 0).")
@click.option("--speak", is_flag=True, help="Speak the prompts aloud with espeak-ng.")
@click.option("--wav", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Write every prompt heard into one WAV file (espeak-ng).")
def call(from_number: str, keys: str | None, advisor: str | None, expect: str | None,
         url: str | None, token: str | None, to_number: str | None, max_wait: float | None,
         emulator: str | None, attestation: str, hangup: str, colleague: str | None,
         on_call: float | None, speak: bool, wav: Path | None) -> None:
    """Place a call on caseline from the terminal, walking its TwiML as Twilio does."""
    _require_twilio_side("call")
    from caseline.terminal_caller import CallOptions, run_call

    options = CallOptions(from_number=from_number, keys=keys, advisor=advisor, expect=expect,
                          url=url, token=token, max_wait=max_wait, emulator=emulator,
                          speak=speak, wav=str(wav) if wav else None, attestation=attestation,
                          hangup=hangup, colleague=colleague, on_call=on_call,
                          **({"to": to_number} if to_number else {}))
    sys.exit(run_call(options, settings=_settings()))


@main.command("twilio-emulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8099, show_default=True)
def twilio_emulator(host: str, port: int) -> None:
    """Run the local emulator of Twilio's REST API (for `make run` and demos)."""
    _require_twilio_side("twilio-emulator")
    from twilio_side import serve_forever

    serve_forever(host, port)


if __name__ == "__main__":  # pragma: no cover
    multiprocessing.freeze_support()
    main()
