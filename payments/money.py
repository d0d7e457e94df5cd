"""Amounts in a currency's minor unit, shown in its major unit (ISO 4217 exponents)."""

from __future__ import annotations

from decimal import Decimal

# Currencies whose minor unit is not a hundredth; every other currency has two decimals.
EXPONENTS: dict[str, int] = {
    **dict.fromkeys("bif clp djf gnf isk jpy kmf krw pyg rwf ugx uyi vnd vuv xaf xof xpf".split(), 0),
    **dict.fromkeys("bhd iqd jod kwd lyd omr tnd".split(), 3),
    "clf": 4,
}


def currency_exponent(currency: str) -> int:
    return EXPONENTS.get(currency.lower(), 2)


def money_major(*, amount: int, currency: str) -> Decimal:
    """`amount` minor units as the major unit: 1250 JPY is ¥1250, 1250 EUR is €12.50."""
    return Decimal(amount).scaleb(-currency_exponent(currency))


def money_format(*, amount: int, currency: str) -> str:
    """The amount as people read it, e.g. '1,250.00 EUR', '1,250 JPY', '1.250 KWD'."""
    exponent = currency_exponent(currency)
    return f"{money_major(amount=amount, currency=currency):,.{exponent}f} {currency.upper()}"
