"""Kubernetes resource quantities (``500m``, ``1.5``, ``64Mi``, ``1e3``).

The syntax is Kubernetes' (``k8s.io/apimachinery/pkg/api/resource``): a signed decimal
number, then one suffix: a binary SI one (``Ki`` ... ``Ei``), a decimal SI one (``m``,
``k``, ``M`` ... ``E``; ``u`` and ``n`` too), or a decimal exponent (``e3``, ``E-2``).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

#: the regular expression Kubernetes quotes when a quantity does not parse
QUANTITY_REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
QUANTITY_MESSAGE = f"quantities must match the regular expression '{QUANTITY_REGEX}'"

_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QTY = re.compile(r"^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE]([+-]?[0-9]+))?$")


def parse_quantity(q: Any) -> Decimal:
    """The value of a quantity; ``ValueError`` (with Kubernetes' message) if it is none."""
    try:
        return _parse(q)
    except ValueError:
        raise ValueError(f'invalid quantity "{q}": {QUANTITY_MESSAGE}') from None


def _parse(q: Any) -> Decimal:
    if isinstance(q, bool):
        raise ValueError(QUANTITY_MESSAGE)
    if isinstance(q, int | float):
        return Decimal(str(q))
    if not isinstance(q, str):
        raise ValueError(QUANTITY_MESSAGE)
    m = _QTY.fullmatch(q)
    if not m:
        raise ValueError(QUANTITY_MESSAGE)
    try:
        num = Decimal(m.group(1))
        if m.group(3) is not None:
            return num.scaleb(int(m.group(3)))
        return num * _SUFFIX[m.group(2) or ""]
    except (InvalidOperation, OverflowError):
        raise ValueError(QUANTITY_MESSAGE) from None


def is_quantity(q: Any) -> bool:
    try:
        parse_quantity(q)
    except ValueError:
        return False
    return True


def cpu_millis(q: Any) -> int:
    return int((parse_quantity(q) * 1000).to_integral_value(rounding="ROUND_CEILING"))


def memory_bytes(q: Any) -> int:
    return int(parse_quantity(q).to_integral_value(rounding="ROUND_CEILING"))


def amount(resource: str, q: Any) -> int:
    """A quantity in the unit the scheduler counts ``resource`` in: CPU in millicores,
    everything else (memory, pods, ephemeral-storage, extended resources) in whole units."""
    return cpu_millis(q) if resource == "cpu" else memory_bytes(q)
