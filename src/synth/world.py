"""The seeded synthetic world: one chunk of customers, their latent traits, then each table as columns.

The data is plausible, not random noise: churn follows a Beta distribution
lifted by the customer's troubles, monthly revenue is lognormal by segment,
about 15% of customers have poor network, ~10% bill shock and 8% roaming
charges, usage rises or falls, consent differs per channel and purpose, ~3%
have no permissions record, and calls and chats come from varied templates
(network complaint, bill dispute, roaming, family plan, upgrade, cancellation
with a competitor, data running out, cheaper plan, happy customer, routine
requests) that carry the words the Journey agent looks for. Each table mixes
the field shapes real feeds use (billing ``monthly_bill`` vs
``monthly_charge``, usage ``total_data_gb`` vs ``data_usage_gb``,
``churn_score`` vs ``churn_probability``, transcripts as text or as messages).

Over 400 lines on purpose: ``World`` is one class whose table methods share
the chunk's traits and draw from one generator in a fixed order (that order is
what makes the same seed give the same files); splitting it across modules
would hide that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import repeat
from typing import Any

import numpy as np

from cvm.synth.columns import Chunk, Column, category, integer, listof, number, offsets_of, struct, text
from cvm.synth.vocabulary import (
    ALL_PAGES,
    BROWSING,
    BUSINESS_PLANS,
    CALL_OPENERS,
    CHANNELS,
    CHARGE_DESCRIPTIONS,
    CHAT_OPENERS,
    CLOSERS,
    CONSENT_RATES,
    CONSUMER_PLANS,
    CONTACT_WINDOWS,
    COUNTRIES,
    DAY_SPAN,
    DND_WINDOWS,
    FIRST_NAMES,
    FULL_NAMES,
    LAST_NAMES,
    MARKETING_REFUSERS,
    NO_PERMISSIONS,
    NONE,
    OFFER_BOOST,
    PAGE_CODES,
    PLACES,
    PLAN_NAMES,
    PLANS,
    PURPOSES,
    RISK_FACTORS,
    ROAMING_AT,
    RURAL_FROM,
    SHOCK_AT,
    SLOT_CHOICES,
    STRAY,
    SUMMED,
    TEMPLATE_TOPIC,
    TEMPLATE_TURNS,
    TEMPLATES,
    TOPICS,
    TREATMENT_IDS,
)


@lru_cache(maxsize=4)
def _day_names(as_of: date) -> tuple[str, ...]:
    """"YYYY-MM-DD" of as_of minus 0, 1, 2 ... DAY_SPAN days: a date column is codes into this."""
    days = np.datetime64(as_of.isoformat(), "D") - np.arange(DAY_SPAN + 1).astype("timedelta64[D]")
    return tuple(days.astype(str).tolist())


def _pick(options: tuple[str, ...], codes: np.ndarray) -> list[str]:
    return list(map(options.__getitem__, codes.tolist()))


def _money(values: np.ndarray) -> list[str]:
    """£45, £2.50, £1204.10 style amounts."""
    cents = np.rint(np.asarray(values, dtype=np.float64) * 100).astype(np.int64).tolist()
    return [f"£{c // 100}" if c % 100 == 0 else f"£{c // 100}.{c % 100:02d}" for c in cents]


def _days_ago(as_of: np.datetime64, days: np.ndarray) -> np.ndarray:
    return (as_of - days).astype("timedelta64[D]").astype(np.int64)


# --- the synthetic world: one chunk of customers --------------------------------------------------


@dataclass
class _Conversations:
    """The calls or chats of a chunk, before they are shaped into a table."""

    owner: np.ndarray
    at: np.ndarray
    """datetime64[s] of each conversation."""
    template: np.ndarray
    opener: np.ndarray
    """Index into the openers; -1 for none."""
    closer: np.ndarray
    as_messages: np.ndarray
    slot_codes: dict[str, np.ndarray]
    offer: np.ndarray
    duration: np.ndarray | None = None



class World:
    """N customers (``first`` is the 0-based index of the first): their latent traits, then each table.

    All customer-level traits are drawn in ``__init__``, in a fixed order; each
    table then draws its own row-level detail when it is asked for, in the order
    of ``TABLES``. The output format never changes a draw.
    """

    def __init__(self, rng: np.random.Generator, first: int, n: int, as_of: date, id_width: int):
        self.rng, self.n = rng, n
        self.as_of = np.datetime64(as_of.isoformat(), "D")
        self.days = _day_names(as_of)
        self.id_names = tuple(map(f"C{{:0{id_width}d}}".format, range(first + 1, first + n + 1)))
        r = rng
        self.first_name = r.integers(0, len(FIRST_NAMES), n)
        self.last_name = r.integers(0, len(LAST_NAMES), n)
        self.business = r.random(n) < 0.15
        # Monthly revenue: lognormal by segment; the plan is the segment's plan nearest in price.
        revenue = np.where(self.business, r.lognormal(np.log(42.0), 0.40, n), r.lognormal(np.log(29.0), 0.45, n))
        revenue = np.clip(revenue, 7.5, 190.0)
        self.plan = np.where(
            self.business,
            self._nearest(revenue, BUSINESS_PLANS) + len(CONSUMER_PLANS),
            self._nearest(revenue, CONSUMER_PLANS),
        )
        self.charge = np.round(np.maximum(np.rint(revenue) - 0.01, 4.99), 2)
        self.allowance = np.array([p[2] for p in PLANS])[self.plan]
        # Tenure: a fifth joined in the last year, the rest a long-tailed spread up to 15 years.
        new = r.random(n) < 0.2
        months = np.where(new, r.uniform(0.5, 12.0, n), 12.0 + r.gamma(2.0, 18.0, n))
        self.tenure_months = np.clip(months, 0.5, 180.0)
        # Where they are and how the network treats them there: ~15% poor (more in the country), ~20% fair.
        self.place = r.integers(0, len(PLACES), n)
        u = r.random(n)
        poor_share = np.where(self.place >= RURAL_FROM, 0.25, 0.10)
        self.poor_network = u < poor_share
        self.fair_network = ~self.poor_network & (u < poor_share + 0.20)
        self.bill_shock = r.random(n) < 0.08
        self.roaming = r.random(n) < np.where(self.business, 0.14, 0.07)
        self.roaming_country = r.integers(0, len(COUNTRIES), n)
        self.roaming_latest = r.random(n) < 0.6
        self.roaming_amount = np.round(np.clip(r.lognormal(np.log(24.0), 0.7, n), 3.0, 260.0), 2)
        trend = r.random(n)
        self.rising = trend < 0.20
        self.falling = (trend >= 0.20) & (trend < 0.35)
        self.overdue = r.random(n) < np.where(self.bill_shock, 0.12, 0.03)
        base_churn = r.beta(2.0, 5.5, n)
        self.topic = self._topics(base_churn)
        self.is_topic = {name: self.topic == i for i, name in enumerate(TOPICS)}
        # Churn: Beta-distributed, lifted by troubles, lowered by long and happy tenure.
        lift = (
            0.9 * self.poor_network + 0.3 * self.fair_network + 0.6 * self.bill_shock + 0.2 * self.roaming
            + 1.6 * self.is_topic["cancel"] + 0.5 * self.overdue + 0.2 * self.is_topic["cheaper"]
            - 0.5 * (self.tenure_months >= 48) - 0.4 * self.is_topic["happy"] + r.normal(0.0, 0.25, n)
        )
        logit = np.log(base_churn / (1.0 - base_churn)) + lift
        self.churn = np.round(np.clip(1.0 / (1.0 + np.exp(-logit)), 0.005, 0.995), 3)
        # Contacts: calls (~35%) and chats (~20%), likelier for customers with a story to tell.
        call_share = np.select(
            [self.is_topic[t] for t in ("network", "bill", "cancel", "roaming", "data", "cheaper")],
            [0.70, 0.72, 0.62, 0.55, 0.40, 0.45], default=0.24,
        )
        has_call = r.random(n) < call_share
        self.calls = np.where(has_call, 1 + r.choice(3, size=n, p=[0.80, 0.17, 0.03]), 0)
        has_chat = r.random(n) < np.where(self.topic == NONE, 0.08, 0.26)
        self.chats = np.where(has_chat, 1 + (r.random(n) < 0.1), 0)
        # Web clicks: a few pages on the topic, some plain browsing, a stray interest page now and then.
        topical = (self.topic != NONE) & (r.random(n) < 0.7)
        self.topic_clicks = np.where(topical, 1 + np.minimum(r.poisson(1.4, n), 5), 0)
        self.browse_clicks = np.minimum(r.poisson(0.9, n), 6)
        self.stray_clicks = (r.random(n) < 0.06).astype(np.int64)
        # Filled in by the billing and usage tables, for the conversations to quote.
        self.latest_total = self.charge
        self.latest_extra = np.zeros(n)
        self.latest_gb = np.full(n, 10.0)

    def _topics(self, base_churn: np.ndarray) -> np.ndarray:
        """Each customer's main story, if any, in order of what weighs most."""
        r, n = self.rng, self.n
        topic = np.full(n, NONE, dtype=np.int64)
        u, v, w = r.random(n), r.random(n), r.random(n)

        def assign(name: str, mask: np.ndarray) -> None:
            topic[(topic == NONE) & mask] = TOPICS.index(name)

        assign("network", self.poor_network & (u < 0.75))
        assign("bill", self.bill_shock & (u < 0.75))
        assign("roaming", self.roaming & (u < 0.70))
        assign("cancel", v < np.where(base_churn >= 0.45, 0.30, 0.015))
        assign("data", self.rising & (self.allowance > 0) & (u < 0.45))
        shares = {
            "family": np.full(n, 0.07), "upgrade": np.where(self.tenure_months >= 20, 0.12, 0.05),
            "cheaper": np.full(n, 0.06), "happy": np.full(n, 0.16), "general": np.full(n, 0.14),
        }
        low = np.zeros(n)
        for name, share in shares.items():
            assign(name, (w >= low) & (w < low + share))
            low = low + share
        return topic

    @staticmethod
    def _nearest(revenue: np.ndarray, plans: tuple[tuple[str, float, float], ...]) -> np.ndarray:
        prices = np.array([p[1] for p in plans])
        return np.searchsorted((prices[1:] + prices[:-1]) / 2, revenue)

    def _ids(self, owner: np.ndarray | None = None) -> Column:
        return category(np.arange(self.n) if owner is None else owner, self.id_names)

    def _dates(self, days_ago: np.ndarray, present: np.ndarray | None = None) -> Column:
        return category(days_ago, self.days, present=present)

    def table(self, name: str, parquet: bool = False) -> Chunk:
        """One table's rows for this chunk (``parquet`` only changes how billing's shape A is spelled)."""
        if name == "billing_data":
            return self._billing_data(parquet)
        return getattr(self, f"_{name}")()

    # -- tables -----------------------------------------------------------------

    def _customers(self) -> Chunk:
        join_days_ago = np.rint(self.tenure_months * 30.4375).astype(np.int64)
        return [
            ("customer_id", self._ids()),
            ("name", category(self.first_name * len(LAST_NAMES) + self.last_name, FULL_NAMES)),
            ("join_date", self._dates(join_days_ago)),
            ("segment", category(self.business, ("consumer", "small_business"))),
            ("plan", category(self.plan, PLAN_NAMES)),
        ]

    def _billing_data(self, parquet: bool = False) -> Chunk:
        """Three monthly bills: shape A (billing_date, monthly_bill, a number) or B (date, monthly_charge, a list).

        Shape A sums its regular and bill-shock charges into ``additional_charges``
        and puts roaming in ``roaming_charges``; shape B lists every charge. In
        Parquet a column has one type, so there shape A's number is a one-item
        list "Additional charges", which reads back the same.
        """
        r, n, months = self.rng, self.n, 3
        owner = np.repeat(np.arange(n), months)
        month = np.tile(np.arange(months), n)
        latest = month == months - 1
        rows = n * months
        shape_a = np.repeat(r.random(n) < 0.55, months)
        bill_day = (self.as_of.astype("datetime64[M]") - (months - 1) + month).astype("datetime64[D]")
        bill_days_ago = _days_ago(self.as_of, bill_day)
        charge = self.charge[owner] + np.where(latest & np.repeat(r.random(n) < 0.04, months), 2.0, 0.0)
        # Up to four charges per bill: two small regular ones, bill shock (latest month), roaming.
        present = np.zeros((rows, 4), dtype=bool)
        present[:, 0] = r.random(rows) < 0.35
        present[:, 1] = present[:, 0] & (r.random(rows) < 0.25)
        present[:, 2] = latest & self.bill_shock[owner]
        roaming_month = np.where(self.roaming_latest[owner], months - 1, months - 2)
        present[:, 3] = self.roaming[owner] & (month == roaming_month)
        amount = np.empty((rows, 4))
        amount[:, :2] = np.maximum(np.round(charge[:, None] * r.uniform(0.02, 0.12, (rows, 2)), 2), 0.05)
        amount[:, 2] = np.round(charge * r.uniform(0.9, 1.8, rows), 2)
        amount[:, 3] = self.roaming_amount[owner]
        described = np.column_stack([
            r.integers(0, SHOCK_AT, rows), r.integers(0, SHOCK_AT, rows),
            r.integers(SHOCK_AT, ROAMING_AT, rows), ROAMING_AT + self.roaming_country[owner],
        ])
        charged_days_before = r.integers(1, 29, (rows, 4))
        status = np.where(latest, np.repeat(np.where(self.overdue, 2, (r.random(n) < 0.03).astype(np.int64)), months), 0)
        summed = np.round((amount[:, :3] * present[:, :3]).sum(axis=1), 2)
        roaming_total = np.round(amount[:, 3] * present[:, 3], 2)
        self.latest_total = (charge + summed + roaming_total)[latest]
        self.latest_extra = (summed + roaming_total)[latest]
        listed = present & ~shape_a[:, None]
        if parquet:
            listed[:, 0] |= shape_a & (summed > 0)
            described[:, 0] = np.where(shape_a, SUMMED, described[:, 0])
            amount[:, 0] = np.where(shape_a, summed, amount[:, 0])
        who, slot = np.nonzero(listed)
        charges = struct([
            ("description", category(described[who, slot], CHARGE_DESCRIPTIONS)),
            ("amount", number(amount[who, slot], 2)),
            ("date", self._dates(bill_days_ago[who] + charged_days_before[who, slot], present=~shape_a[who] if parquet else None)),
        ])
        shape_b = ~shape_a
        columns: Chunk = [
            ("customer_id", self._ids(owner)),
            ("billing_date", self._dates(bill_days_ago, present=shape_a)),
            ("date", self._dates(bill_days_ago, present=shape_b)),
            ("monthly_bill", number(charge, 2, present=shape_a)),
            ("monthly_charge", number(charge, 2, present=shape_b)),
        ]
        if not parquet:
            columns.append(("additional_charges", number(summed, 2, present=shape_a)))
        columns += [
            ("additional_charges", listof(offsets_of(listed.sum(axis=1)), charges, present=None if parquet else shape_b)),
            ("roaming_charges", number(roaming_total, 2, present=shape_a & (roaming_total > 0))),
            ("plan", category(self.plan[owner], PLAN_NAMES, present=shape_a)),
            ("plan_name", category(self.plan[owner], PLAN_NAMES, present=shape_b)),
            ("payment_status", category(status, ("paid", "pending", "overdue"))),
        ]
        return columns

    def _usage_data(self) -> Chunk:
        """Three months: shape A (date, total_data_gb, call_minutes, sms_count) or B (month, data_usage_gb, voice_minutes, roaming_data_gb)."""
        r, n, months = self.rng, self.n, 3
        owner = np.repeat(np.arange(n), months)
        month = np.tile(np.arange(months), n)
        shape_a = np.repeat(r.random(n) < 0.55, months)
        first_of = (self.as_of.astype("datetime64[M]") - (months - 1) + np.arange(months)).astype("datetime64[M]")
        unlimited = self.allowance == 0
        typical = np.where(unlimited, r.lognormal(np.log(26.0), 0.6, n), self.allowance * r.beta(4.0, 3.0, n))
        typical = np.where(self.rising & ~unlimited, self.allowance * r.uniform(0.45, 0.7, n), typical)
        step = np.where(self.rising, r.uniform(0.25, 0.9, n), np.where(self.falling, -r.uniform(0.2, 0.6, n), 0.0))
        factor = 1.0 + step[owner] * month / (months - 1) + r.normal(0.0, 0.04, n * months)
        gb = np.maximum(np.round(typical[owner] * factor, 1), 0.1)
        voice_median = np.where(self.business, 620.0, 210.0)
        voice = np.rint(r.lognormal(np.log(voice_median), 0.6, n)[owner] * r.uniform(0.85, 1.15, n * months))
        sms = np.rint(r.lognormal(np.log(30.0), 0.8, n)[owner] * r.uniform(0.7, 1.3, n * months))
        roaming_month = np.where(self.roaming_latest[owner], months - 1, months - 2)
        roaming_gb = np.where(self.roaming[owner] & (month == roaming_month), r.uniform(0.3, 4.5, n * months), 0.0)
        self.latest_gb = gb[month == months - 1]
        shape_b = ~shape_a
        return [
            ("customer_id", self._ids(owner)),
            ("date", category(month, tuple(first_of.astype("datetime64[D]").astype(str).tolist()), present=shape_a)),
            ("month", category(month, tuple(first_of.astype(str).tolist()), present=shape_b)),
            ("total_data_gb", number(gb, 1, present=shape_a)),
            ("data_usage_gb", number(gb, 1, present=shape_b)),
            ("call_minutes", integer(voice, present=shape_a)),
            ("voice_minutes", integer(voice, present=shape_b)),
            ("sms_count", integer(sms, present=shape_a)),
            ("roaming_data_gb", number(roaming_gb, 1, present=shape_b)),
        ]

    def _network_data(self) -> Chunk:
        """One to three measurements in the last six weeks, poor, fair or good for the customer."""
        r = self.rng
        counts = r.choice([1, 2, 3], size=self.n, p=[0.30, 0.45, 0.25])
        owner = np.repeat(np.arange(self.n), counts)
        rows = len(owner)
        days_ago = r.integers(1, 42, rows)
        days_ago = days_ago[np.lexsort((-days_ago, owner))]
        poor, fair = self.poor_network[owner], self.fair_network[owner]
        first_row = np.ones(rows, dtype=bool)
        first_row[1:] = owner[1:] != owner[:-1]
        latency = np.where(poor, r.uniform(85, 190, rows), np.where(fair, r.uniform(48, 76, rows), np.clip(r.normal(34, 8, rows), 14, 55)))
        dropped = np.where(
            poor, 1 + r.poisson(3.5, rows),
            np.where(fair, first_row & (r.random(rows) < 0.4), r.random(rows) < 0.03),
        )
        signal = np.where(poor, r.uniform(-118, -101, rows), np.where(fair, r.uniform(-103, -91, rows), r.uniform(-92, -64, rows)))
        speed = np.where(poor, r.uniform(0.4, 8.0, rows), np.where(fair, r.uniform(8.0, 30.0, rows), r.lognormal(np.log(65.0), 0.45, rows)))
        return [
            ("customer_id", self._ids(owner)),
            ("date", self._dates(days_ago)),
            ("avg_latency_ms", integer(np.rint(latency))),
            ("dropped_calls", integer(dropped)),
            ("signal_strength_dbm", integer(np.rint(signal))),
            ("download_speed_mbps", number(speed, 1)),
            ("location", category(self.place[owner], PLACES)),
        ]

    def _churn_score(self) -> Chunk:
        r, n, t = self.rng, self.n, self.is_topic
        complaint = t["network"] | t["bill"] | t["cancel"]
        factors = np.column_stack([
            t["network"] | (self.poor_network & (r.random(n) < 0.5)),
            self.calls >= 2,
            t["network"] & (self.topic_clicks > 0),
            self.bill_shock,
            t["bill"],
            self.roaming,
            t["cancel"] & (r.random(n) < 0.6),
            t["cancel"] & (self.topic_clicks > 0),
            complaint & (self.calls + self.chats > 0) & (r.random(n) < 0.6),
            self.overdue,
            t["cheaper"],
            t["data"],
            t["upgrade"],
            t["family"],
            r.random(n) < 0.07,
            self.charge < 15,
            (self.tenure_months >= 60) & (self.churn < 0.3),
        ])
        _, which = np.nonzero(factors)
        use_score = r.random(n) < 0.55
        return [
            ("customer_id", self._ids()),
            ("churn_score", number(self.churn, 3, present=use_score)),
            ("churn_probability", number(self.churn, 3, present=~use_score)),
            ("score_date", self._dates(r.integers(0, 4, n))),
            ("risk_factors", listof(offsets_of(factors.sum(axis=1)), category(which, RISK_FACTORS))),
        ]

    def _conversations(self, counts: np.ndarray, call: bool) -> _Conversations:
        r = self.rng
        owner = np.repeat(np.arange(self.n), counts)
        rows = len(owner)
        # Calls in the last 45 days between 08:00 and 21:00; chats from 07:00 to 23:30.
        days_ago = r.integers(1, 46, rows)
        seconds = r.integers(8 * 3600, 21 * 3600, rows) if call else r.integers(7 * 3600, 23 * 3600 + 1800, rows)
        at = (self.as_of - days_ago.astype("timedelta64[D]")).astype("datetime64[s]") + seconds.astype("timedelta64[s]")
        at = at[np.lexsort((at, owner))]
        # Customers without a story get in touch about routine things or to say thanks.
        topic = self.topic[owner]
        idle = topic == NONE
        topic = np.where(idle, np.where(r.random(rows) < 0.55, TOPICS.index("general"), TOPICS.index("happy")), topic)
        pick = r.random(rows)
        template = np.empty(rows, dtype=np.int64)
        for index in range(len(TOPICS)):
            choices = np.flatnonzero(TEMPLATE_TOPIC == index)
            mine = topic == index
            template[mine] = choices[(pick[mine] * len(choices)).astype(np.int64)]
        openers = len(CALL_OPENERS if call else CHAT_OPENERS)
        opener = r.integers(0 if call else -1, openers, rows)  # a chat may start with the customer
        closer = r.integers(-1, len(CLOSERS), rows)
        as_messages = r.random(rows) < (0.25 if call else 0.75)
        slot_codes = {name: r.integers(0, len(options), rows) for name, options in SLOT_CHOICES.items()}
        slot_codes["ref"] = r.integers(100000, 1000000, rows)
        offer = np.round(np.maximum(self.charge[owner] * r.uniform(0.55, 0.85, rows), 6.0)) - 0.01
        duration = np.rint(np.clip(r.lognormal(np.log(380.0), 0.5, rows), 60, 2400)) if call else None
        return _Conversations(owner, at, template, opener, closer, as_messages, slot_codes, offer, duration)

    def _slot(self, conv: _Conversations, name: str, rows: np.ndarray) -> list[str]:
        """The words for ``{name}`` in conversations ``rows``."""
        owner = conv.owner[rows]
        if name in SLOT_CHOICES:
            return _pick(SLOT_CHOICES[name], conv.slot_codes[name][rows])
        if name == "first":
            return _pick(FIRST_NAMES, self.first_name[owner])
        if name == "place":
            return _pick(PLACES, self.place[owner])
        if name == "country":
            return _pick(COUNTRIES, self.roaming_country[owner])
        if name == "ref":
            return list(map("NW-{}".format, conv.slot_codes["ref"][rows].tolist()))
        if name == "gb":
            return list(map("{}GB".format, np.rint(self.latest_gb[owner]).astype(np.int64).tolist()))
        if name == "day_part":
            hour = (conv.at[rows] - conv.at[rows].astype("datetime64[D]")).astype(np.int64) // 3600
            return _pick(("morning", "afternoon", "evening"), np.searchsorted([12, 18], hour, side="right"))
        amounts = {
            "price": lambda: self.charge[owner], "bill": lambda: self.latest_total[owner],
            "extra": lambda: np.maximum(self.latest_extra[owner], 1.0), "roaming": lambda: self.roaming_amount[owner],
            "offer": lambda: conv.offer[rows],
        }
        return _money(amounts[name]())

    def _fill(self, template: str, conv: _Conversations, rows: np.ndarray) -> list[str]:
        """``template`` with every ``{slot}`` filled for each of ``rows``."""
        parts: list[Any] = []
        rest = template
        while "{" in rest:
            before, _, after = rest.partition("{")
            name, _, rest = after.partition("}")
            parts += [repeat(before), self._slot(conv, name, rows)]
        if not parts:
            return [template] * len(rows)
        return list(map("".join, zip(*parts, repeat(rest))))

    def _fill_variants(self, variants: tuple[str, ...], choice: np.ndarray, conv: _Conversations, rows: np.ndarray) -> list[str]:
        out = [""] * len(rows)
        chosen = choice[rows]
        for index, variant in enumerate(variants):
            picked = np.flatnonzero(chosen == index)
            for position, words in zip(picked.tolist(), self._fill(variant, conv, rows[picked])):
                out[position] = words
        return out

    def _transcript_table(self, conv: _Conversations, call: bool) -> Chunk:
        """Text ("Agent: ... Customer: ...") or messages ([{speaker, text}]) per conversation."""
        rows = len(conv.owner)
        # Every conversation as a list of turns: an opener?, the template's turns, a closer?
        has_opener, has_closer = conv.opener >= 0, conv.closer >= 0
        offsets = offsets_of(TEMPLATE_TURNS[conv.template] + has_opener + has_closer)
        speaker = np.zeros(offsets[-1], dtype=np.int64)  # 0 agent, 1 customer
        said = [""] * int(offsets[-1])

        def put(positions: np.ndarray, words: list[str]) -> None:
            for position, line in zip(positions.tolist(), words):
                said[position] = line

        opened = np.flatnonzero(has_opener)
        put(offsets[opened], self._fill_variants(CALL_OPENERS if call else CHAT_OPENERS, conv.opener, conv, opened))
        start = offsets[:-1] + has_opener
        for index, (_, turns) in enumerate(TEMPLATES):
            mine = np.flatnonzero(conv.template == index)
            for position, (who, words) in enumerate(turns if len(mine) else ()):
                speaker[start[mine] + position] = who == "customer"
                put(start[mine] + position, self._fill(words, conv, mine))
        closed = np.flatnonzero(has_closer)
        put(offsets[closed + 1] - 1, self._fill_variants(CLOSERS, conv.closer, conv, closed))
        # The text form: "Agent: ... Customer: ..." on one line.
        labelled = list(map(str.__add__, _pick(("Agent: ", "Customer: "), speaker), said))
        bounds = offsets.tolist()
        as_text = [" ".join(labelled[a:b]) for a, b in zip(bounds, bounds[1:])]
        messages = struct([("speaker", category(speaker, ("agent", "customer"))), ("text", text(said))])
        stamps = text(conv.at)
        columns: Chunk = [("customer_id", self._ids(conv.owner))]
        if call and conv.duration is not None:
            # Text-shaped calls are dated by the day (date) or to the second (timestamp).
            by_day = ~conv.as_messages & (self.rng.random(rows) < 0.6)
            day = _days_ago(self.as_of, conv.at.astype("datetime64[D]"))
            columns += [
                ("date", self._dates(day, present=by_day)),
                ("timestamp", Column("text", values=stamps.values, present=~by_day)),
                ("duration_seconds", integer(conv.duration)),
            ]
        else:
            columns.append(("timestamp", stamps))
        columns += [
            ("transcript", text(as_text, present=~conv.as_messages)),
            ("messages", listof(offsets, messages, present=conv.as_messages)),
        ]
        return columns

    def _call_transcripts(self) -> Chunk:
        return self._transcript_table(self._conversations(self.calls, call=True), call=True)

    def _web_transcripts(self) -> Chunk:
        return self._transcript_table(self._conversations(self.chats, call=False), call=False)

    def _web_clicks(self) -> Chunk:
        r, n = self.rng, self.n
        counts = self.topic_clicks + self.browse_clicks + self.stray_clicks
        owner = np.repeat(np.arange(n), counts)
        rows = len(owner)
        position = np.arange(rows) - offsets_of(counts)[owner]
        kind = np.where(position < self.topic_clicks[owner], 0, np.where(position < (self.topic_clicks + self.browse_clicks)[owner], 1, 2))
        page = r.integers(0, len(BROWSING), rows)  # BROWSING opens ALL_PAGES
        topical = np.flatnonzero(kind == 0)
        page[topical] = PAGE_CODES[self.topic[owner[topical]], r.integers(0, 3, len(topical))]
        stray = np.flatnonzero(kind == 2)
        page[stray] = np.asarray([ALL_PAGES.index(p) for p in STRAY])[r.integers(0, len(STRAY), len(stray))]
        days_ago = r.integers(0, 31, rows)
        seconds = r.integers(7 * 3600, 23 * 3600 + 3000, rows)
        at = (self.as_of - days_ago.astype("timedelta64[D]")).astype("datetime64[s]") + seconds.astype("timedelta64[s]")
        order = np.lexsort((at, owner))
        duration = np.rint(np.clip(r.lognormal(np.log(90.0), 0.7, rows), 5, 900))
        return [
            ("customer_id", self._ids(owner)),
            ("timestamp", text(at[order])),
            ("page", category(page[order], ALL_PAGES)),
            ("duration_seconds", integer(duration)),
        ]

    def _offer_recommendations(self) -> Chunk:
        """Two to four scored offers per customer, best first; the topic lifts the offers that answer it."""
        r, n = self.rng, self.n
        score = r.beta(2.0, 7.0, (n, len(TREATMENT_IDS)))
        for topic_name, boosts in OFFER_BOOST.items():
            mine = self.is_topic[topic_name]
            for treatment, boost in boosts.items():
                score[mine, TREATMENT_IDS.index(treatment)] += boost * r.uniform(0.6, 1.2, int(mine.sum()))
        score = np.clip(score, 0.01, 0.95).round(2)
        ranked = np.argsort(-score, axis=1, kind="stable")
        k = r.integers(2, 5, n)
        who, rank = np.nonzero(np.arange(len(TREATMENT_IDS))[None, :] < k[:, None])
        chosen = ranked[who, rank]
        rows = len(who)
        return [
            ("customer_id", self._ids(who)),
            ("offer_id", category(chosen, TREATMENT_IDS)),
            ("acceptance_probability", number(score[who, chosen], 2)),
            ("model", category(np.zeros(rows, dtype=np.int64), ("offer_model_v3",))),
            ("scored_at", self._dates(np.full(rows, 3))),
        ]

    def _permissions(self) -> Chunk:
        """Y/N per channel and purpose; a few customers have no record at all."""
        r, n = self.rng, self.n
        keep = np.flatnonzero(r.random(n) >= NO_PERMISSIONS)
        m = len(keep)
        refuses_marketing = r.random(m) < MARKETING_REFUSERS
        channels = []
        for channel in CHANNELS:
            purposes = []
            for purpose, rate in zip(PURPOSES, CONSENT_RATES[channel]):
                given = r.random(m) < rate
                if purpose == "marketing":
                    given &= ~refuses_marketing
                purposes.append((purpose, category(given, ("N", "Y"))))
            channels.append((channel, struct(purposes)))
        has_window = r.random(m) < 0.75
        return [
            ("customer_id", self._ids(keep)),
            ("permissions", struct(channels)),
            ("do_not_disturb", category(r.choice(len(DND_WINDOWS), size=m, p=[0.40, 0.25, 0.20, 0.10, 0.05]), DND_WINDOWS)),
            ("preferred_contact_time", category(r.integers(0, len(CONTACT_WINDOWS), m), CONTACT_WINDOWS, present=has_window)),
        ]
