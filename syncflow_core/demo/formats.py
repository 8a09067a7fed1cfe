"""How the demo ERP spells values: locale-formatted amounts, Oracle dates, damaged text.

Amounts are integer cents so formatting is exact and deterministic (no float rounding).
"""

from __future__ import annotations

import random
from datetime import date, datetime

__all__ = [
    "de_amount",
    "en_amount",
    "mojibake",
    "oracle_date",
    "oracle_date_long",
    "roughen_text",
]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def en_amount(cents: int, decimals: int = 2) -> str:
    """``1234567`` -> ``'12,345.67'`` (English: comma thousands, dot decimals)."""
    sign = "-" if cents < 0 else ""
    units, frac = divmod(abs(cents), 100)
    text = f"{units:,}"
    return f"{sign}{text}.{frac:02d}" if decimals else f"{sign}{text}"


def de_amount(cents: int) -> str:
    """``123456`` -> ``'1.234,56'`` (German: dot thousands, comma decimals)."""
    sign = "-" if cents < 0 else ""
    units, frac = divmod(abs(cents), 100)
    return f"{sign}{units:,}".replace(",", ".") + f",{frac:02d}"


def oracle_date(d: date | datetime) -> str:
    """Oracle's default ``DD-MON-RR``: ``'01-APR-23'``."""
    return f"{d.day:02d}-{_MONTHS[d.month - 1]}-{d.year % 100:02d}"


def oracle_date_long(d: date | datetime) -> str:
    """``DD-MON-YYYY``: ``'01-APR-2023'``."""
    return f"{d.day:02d}-{_MONTHS[d.month - 1]}-{d.year:04d}"


def mojibake(text: str) -> str:
    """UTF-8 bytes read as Windows-1252: ``'Müller'`` -> ``'MÃ¼ller'``."""
    raw = text.encode("utf-8")
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:  # a byte cp1252 leaves undefined: latin-1 maps every byte
        return raw.decode("latin-1")


def roughen_text(rng: random.Random, text: str) -> str:
    """Sometimes damage a name the way ERPs do: mojibake, NBSP, control chars, stray spaces."""
    r = rng.random()
    if r < 0.01 and not text.isascii():
        return mojibake(text)
    if r < 0.03 and " " in text:
        return text.replace(" ", "\u00a0", 1)
    if r < 0.035:
        return text + rng.choice(("\r\n", "\t", "\x07", "\x1a"))
    if r < 0.06:
        return rng.choice(("  ", " ", "")) + text + rng.choice((" ", "   "))
    return text
