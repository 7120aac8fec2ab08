"""The stored remittance months of one practice, as figures (`vendorwatch remits summary`, the digest, the
verification rule)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from config import Config
from remits.figures import Figures, by_payer_and_month
from storage.models import RemitMonth


def stored_months(session: Session, practice_id: str, month: dt.date | None = None,
                  payer_id: str | None = None) -> list[RemitMonth]:
    query = select(RemitMonth).where(RemitMonth.practice_id == practice_id)
    if month is not None:
        query = query.where(RemitMonth.month == month)
    if payer_id is not None:
        query = query.where(RemitMonth.payer_id == payer_id)
    return list(session.scalars(query.order_by(RemitMonth.month, RemitMonth.payer_id)))


def practices_with_months(session: Session, practice_ids: list[str]) -> frozenset[str]:
    """Which of these practices have any remittance month stored: evaluation asks once for many practices, and
    most practices have none."""
    query = select(RemitMonth.practice_id).where(RemitMonth.practice_id.in_(practice_ids)).distinct()
    return frozenset(session.scalars(query))


def payer_id_of(config: Config, payer: str) -> str | None:
    """A payer given by its id or its name (case-insensitive), as kpis.yaml lists it."""
    for payer_id, name in config.catalog.remits.payers.items():
        if payer in (payer_id, name) or payer.casefold() == name.casefold():
            return payer_id
    return None


def summary(session: Session, config: Config, practice_id: str, month: dt.date | None = None,
            payer_id: str | None = None) -> list[Figures]:
    rows = stored_months(session, practice_id, month, payer_id)
    figures = by_payer_and_month(rows, config.catalog.remits.payers)
    return figures if payer_id is None else [f for f in figures if f.payer != "all payers"]
