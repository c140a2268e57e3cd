"""The go-live Student ID check: recent beacons and a health report of what makes billing wrong.

Each check reads stored rows (learners, events, refused origins). For an
anonymised client only the checks that work on pseudonyms and name digests
run, and the examples they give are pseudonyms or digests, never a plain value.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clients.services import snapshot
from app.identity.placeholders import policy_entries
from app.identity.student_ids import Pseudonymiser, is_name_digest, short_reference
from app.ingest import held_back, seatless
from app.models import Client, Course, Event, Learner, RefusedOrigin, utcnow

# Learners stored under these (and the client's own placeholder list) are flagged; pseudonyms are tried
# for these only. New beacons with a placeholder are held back (placeholders, ingest.held_back).
PLACEHOLDER_IDS = ("undefined", "null", "0", "none", "nan", "[object object]")
MANY_IDS_PER_NAME = 3          # one name under this many IDs or more: IDs change per session?
SPIKE_MIN_NEW_IDS = 10         # fewer new IDs than this in a day is never a spike
SPIKE_FACTOR = 3               # ... nor less than this times the usual daily new IDs
WINDOW = dt.timedelta(days=7)  # how far back the name checks look
MAX_EXAMPLES = 5


@dataclass
class HealthFlag:
    code: str
    title: str
    detail: str
    examples: list[str] = field(default_factory=list)


@dataclass
class HealthReport:
    anonymised: bool
    since: dt.datetime
    flags: list[HealthFlag]
    not_checked: list[str]
    refused_origins: list[dict]
    beacons_in_window: int

    @property
    def ok(self) -> bool:
        return not self.flags


def short(value: str) -> str:
    """Pseudonyms and digests are long: the go-live check shows the same short form as billing."""
    return short_reference(value)


def recent_beacons(session: Session, client: Client, after_id: int | None = None, limit: int = 25) -> list[dict]:
    """Beacons ready for a page or JSON.

    Without ``after_id``: the newest ``limit``, newest first (the page). With
    it: those with a greater ID, oldest first, up to 100 (the live feed adds
    them in turn). For anonymised clients the identity is a pseudonym and the
    name a digest, both shortened; a plain value stored before a switch never shows.
    """
    query = (
        select(Event.id, Event.received_at, Event.kind, Event.learner_name, Event.lms_host,
               Learner.identity, Learner.pseudonymised, Course.title)
        .join(Learner, Learner.id == Event.learner_id).join(Course, Course.id == Event.course_id)
        .where(Event.client_id == client.id)
    )
    if after_id is None:
        query = query.order_by(Event.id.desc()).limit(limit)
    else:
        query = query.where(Event.id > after_id).order_by(Event.id).limit(100)
    rows = session.execute(query).all()
    beacons = []
    for event_id, received_at, kind, name, host, identity, pseudonymised, course in rows:
        if client.anonymised or pseudonymised:
            student = short(identity) if pseudonymised else "(not yet pseudonymised)"
            shown_name = short(name) if is_name_digest(name) else ("" if not name else "(hidden)")
        else:
            student, shown_name = identity, name or ""
        beacons.append({"id": event_id, "received_at": received_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                        "event": kind, "course": course, "student_id": student, "student_name": shown_name,
                        "lms_host": host or ""})
    return beacons


def health_report(session: Session, pseudonymiser: Pseudonymiser, client: Client,
                  now: dt.datetime | None = None) -> HealthReport:
    now = now or utcnow()
    since = now - WINDOW
    anonymised = client.anonymised
    flags: list[HealthFlag] = []
    not_checked: list[str] = []

    held = held_back.figures(session, client.id)
    if held.beacons:
        flags.append(HealthFlag(
            "held_back", "Beacons held back: placeholder student IDs",
            f"{held.beacons} beacon(s), {held.launches} of them launches, came with a placeholder instead of a "
            "student ID. They are kept but counted nowhere (billing, CSVs, API, seats, webhooks) until a CSM "
            "releases them. Check how the LMS fills cmi.core.student_id / cmi.learner_id.",
            [f"“{r.placeholder}”: {r.beacons} beacon(s), {r.launches} launch(es), last "
             f"{r.last_at.strftime('%Y-%m-%d %H:%M UTC')}" for r in held.by_placeholder[:MAX_EXAMPLES]]))

    # A sealed client's IDs are sealed in the learner's browser: their pseudonyms can never be compared
    # with the placeholders' here; its trackers flag placeholders in the beacon instead.
    placeholder = [] if client.sealed else _placeholder_ids(session, pseudonymiser, client)
    if client.sealed:
        not_checked.append("Placeholder student IDs by their value: this client's IDs are sealed with its own key "
                           "before they reach us; its packages flag placeholders (“undefined”, “null”, “0”…) "
                           "in each beacon instead.")
    if placeholder:
        flags.append(HealthFlag(
            "placeholder_ids", "Blank or placeholder student IDs counted as learners",
            "Learners stored under a placeholder (before placeholders were held back, or released by a CSM) "
            "are counted, and each stands for every learner the LMS sent it for. Check how the LMS fills "
            "cmi.core.student_id / cmi.learner_id.",
            [f"{label}: {count} learner record(s)" for label, count in placeholder]))

    names_per_id = session.execute(
        select(Learner.identity, Learner.pseudonymised, func.count(func.distinct(Event.learner_name)))
        .join(Learner, Learner.id == Event.learner_id)
        .where(Event.client_id == client.id, Event.received_at >= since, Event.learner_name.is_not(None),
               Event.learner_name != "")
        .group_by(Learner.id, Learner.identity, Learner.pseudonymised)
        .having(func.count(func.distinct(Event.learner_name)) > 1)
        .order_by(func.count(func.distinct(Event.learner_name)).desc())
    ).all()
    if names_per_id:
        flags.append(HealthFlag(
            "id_with_several_names", "The same student ID arrives with different names",
            f"{len(names_per_id)} student ID(s) came with more than one name: the LMS may be reusing IDs "
            "(a shared or generic account), so several people are counted as one.",
            [f"{_shown_identity(client, identity, pseudonymised)}: {n} names"
             for identity, pseudonymised, n in names_per_id[:MAX_EXAMPLES]]))

    ids_per_name = session.execute(
        select(Event.learner_name, func.count(func.distinct(Event.learner_id)))
        .where(Event.client_id == client.id, Event.received_at >= since, Event.learner_name.is_not(None),
               Event.learner_name != "")
        .group_by(Event.learner_name)
        .having(func.count(func.distinct(Event.learner_id)) >= MANY_IDS_PER_NAME)
        .order_by(func.count(func.distinct(Event.learner_id)).desc())
    ).all()
    if ids_per_name:
        flags.append(HealthFlag(
            "name_with_many_ids", "One name arrives under many student IDs",
            f"{len(ids_per_name)} name(s) came with {MANY_IDS_PER_NAME} or more different IDs: the LMS may "
            "make a new ID per session, so one person is counted many times.",
            [f"{_shown_name(client, name)}: {n} IDs" for name, n in ids_per_name[:MAX_EXAMPLES]]))

    if anonymised:
        not_checked.append("Names in “Last, First” form: names are stored only as keyed digests, "
                           "so their form cannot be read.")
    else:
        names = list(session.scalars(
            select(Event.learner_name).where(Event.client_id == client.id, Event.received_at >= since,
                                             Event.learner_name.is_not(None)).distinct()))
        bad = sorted(n for n in names if not is_name_digest(n) and not _last_first(n))
        if bad:
            flags.append(HealthFlag(
                "name_not_last_first", "Names not in “Last, First” form",
                f"{len(bad)} of {len(names)} name(s) have no “Last, First” form. SCORM LMSs send "
                "“Last, First”; another form suggests a field mapped wrongly or a display name instead.",
                [n if n else "(empty name)" for n in bad[:MAX_EXAMPLES]]))

    spike = _new_id_spike(session, client, now)
    if spike:
        flags.append(spike)

    refused = [
        {"origin": origin, "count": count, "last_seen": last_seen.strftime("%Y-%m-%d %H:%M UTC")}
        for origin, count, last_seen in session.execute(
            select(RefusedOrigin.origin, RefusedOrigin.count, RefusedOrigin.last_seen)
            .where(RefusedOrigin.client_id == client.id).order_by(RefusedOrigin.count.desc()))
    ]
    if refused:
        flags.append(HealthFlag(
            "refused_origins", "Beacons refused from hosts not on the allowed list",
            "These LMS hosts sent beacons with this client's key but are not among its allowed origins. "
            "Either add the host (it is the client's LMS) or the package runs somewhere it was not sold to.",
            [f"{r['origin']}: {r['count']} beacon(s), last {r['last_seen']}" for r in refused[:MAX_EXAMPLES]]))

    set_aside = seatless.recent(session, client.id, since)
    if set_aside["beacons"]:
        flags.append(HealthFlag(
            "seatless_beacons", "Beacons set aside without a seat grant",
            f"{set_aside['beacons']} beacon(s) of {set_aside['learners']} learner(s) came with a remote package's "
            "key but without the seat grant its launcher obtains, while the licence blocks new learners. They are "
            "kept but take no seat and are not billed. Someone may be sending beacons with a key read from the "
            "package (revoke its key on the package's page if they go on), or an LMS still runs a remote package "
            "built before seat grants (build it again and upload it as a new version).",
            [f"{host}: {n} beacon(s)" for host, n in set_aside["hosts"][:MAX_EXAMPLES]]))

    in_window = session.scalar(select(func.count()).select_from(Event).where(
        Event.client_id == client.id, Event.received_at >= since)) or 0
    return HealthReport(anonymised, since, flags, not_checked, refused, in_window)


def warnings_by_client(session: Session, pseudonymiser: Pseudonymiser, clients: list[Client]) -> dict[int, int]:
    """How many health flags each client has now (for the client list)."""
    return {c.id: len(health_report(session, pseudonymiser, c).flags) for c in clients}


def _shown_identity(client: Client, identity: str, pseudonymised: bool) -> str:
    if pseudonymised:
        return short(identity)
    if client.anonymised:
        return "(a learner not yet pseudonymised)"
    return identity


def _shown_name(client: Client, name: str) -> str:
    if is_name_digest(name):
        return "name " + short(name)
    if client.anonymised:
        return "(hidden name)"
    return name


def _last_first(name: str) -> bool:
    last, sep, first = name.partition(",")
    return bool(sep) and bool(last.strip()) and bool(first.strip())


def _placeholder_ids(session: Session, pseudonymiser: Pseudonymiser, client: Client) -> list[tuple[str, int]]:
    """Stored learners whose ID is a placeholder; for pseudonyms, compare with the placeholders' pseudonyms."""
    wanted: dict[str, str] = {value: f"“{value}”" for value in (*PLACEHOLDER_IDS,
                                                                   *policy_entries(client.placeholder_ids))}
    key = snapshot(session, client).pseudonym_key
    if key is not None:
        # Pseudonyms keep case (IDs without "@" are not case-folded): try the usual spellings (of the
        # commonest forms only: each costs an Argon2 hash, and the client list asks for every client).
        for value in PLACEHOLDER_IDS:
            for spelling in {value, value.upper(), value.capitalize()}:
                wanted[pseudonymiser.pseudonym(key, spelling)] = f"“{value}” (pseudonymised)"
    rows = session.execute(
        select(Learner.identity, func.count()).where(Learner.client_id == client.id,
                                                     func.lower(func.trim(Learner.identity)).in_(list(wanted))
                                                     | Learner.identity.in_(list(wanted)))
        .group_by(Learner.identity)
    ).all()
    found: dict[str, int] = {}
    for identity, count in rows:
        label = wanted.get(identity) or wanted.get(identity.strip().lower())
        if label:
            found[label] = found.get(label, 0) + count
    return sorted(found.items())


def _new_id_spike(session: Session, client: Client, now: dt.datetime) -> HealthFlag | None:
    """New IDs in the last 24 hours against the daily new IDs of the week before.

    A client with no learners before that day has no baseline (a go-live day is
    all new IDs) and is not flagged.
    """
    day_start = now - dt.timedelta(days=1)
    first_seen = list(session.scalars(select(Learner.first_seen).where(
        Learner.client_id == client.id, Learner.first_seen >= day_start - WINDOW)))
    recent = sum(1 for seen in first_seen if seen >= day_start)
    earlier = [seen for seen in first_seen if seen < day_start]
    has_history = bool(earlier) or session.scalar(select(Learner.id).where(
        Learner.client_id == client.id, Learner.first_seen < day_start).limit(1)) is not None
    if not has_history or recent < SPIKE_MIN_NEW_IDS:
        return None
    per_day = [0] * WINDOW.days
    for seen in earlier:
        index = min(int((day_start - seen) / dt.timedelta(days=1)), WINDOW.days - 1)
        per_day[index] += 1
    usual = max(statistics.mean(per_day), 1)
    if recent < SPIKE_FACTOR * usual:
        return None
    return HealthFlag(
        "new_id_spike", "A sudden spike of new student IDs",
        f"{recent} new student IDs in the last 24 hours against about {usual:.0f} a day in the week before. "
        "If the number of learners did not jump, the LMS may be sending a different ID each session.",
        [])
