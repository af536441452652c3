"""Check digits: whether a digit string is valid under a named checksum.

Try: `digitrec predict card.png --digits 16 --checksum luhn`.

| name       | used by                                        | catches                                  |
|------------|------------------------------------------------|------------------------------------------|
| `luhn`     | payment cards, IMEI, many national IDs         | every single wrong digit, most swaps     |
| `verhoeff` | 12-digit identity numbers (Aadhaar), some IDs  | every single wrong digit, every swap     |
| `gtin`     | EAN-8, UPC-A (12), EAN-13, GTIN-14 bar codes   | every single wrong digit, most swaps     |

Each is one function `str -> bool` over a string of ASCII digits, its check digit last; adding
another is one such function and one line in CHECKSUMS.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["CHECKSUMS", "gtin", "luhn", "verhoeff"]


def luhn(digits: str) -> bool:
    """Luhn (ISO/IEC 7812-1): from the right, every second digit doubled (its digits summed), the
    total a multiple of 10.

    >>> luhn("79927398713"), luhn("79927398710")
    (True, False)
    """
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return bool(digits) and total % 10 == 0


# Verhoeff's tables: _D multiplies in the dihedral group D5 (0-4 rotations, 5-9 reflections);
# _P permutes a digit by its position, each row the previous one composed with _P[1].
def _d5(j: int, k: int) -> int:
    if j < 5:
        return (j + k) % 5 + (5 if k >= 5 else 0)
    return (j - k) % 5 + (0 if k >= 5 else 5)


_D = [[_d5(j, k) for k in range(10)] for j in range(10)]
_P = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4]]
while len(_P) < 8:
    _P.append([_P[1][v] for v in _P[-1]])


def verhoeff(digits: str) -> bool:
    """Verhoeff (1969): the check digit makes the D5 product over the digits, each permuted by its
    position from the right, the identity.

    >>> verhoeff("2363"), verhoeff("2364"), verhoeff("2633")
    (True, False, False)
    """
    check = 0
    for i, c in enumerate(reversed(digits)):
        check = _D[check][_P[i % 8][int(c)]]
    return bool(digits) and check == 0


def gtin(digits: str) -> bool:
    """GS1 check digit (EAN-8, UPC-A, EAN-13, GTIN-14): from the right, weights 1, 3, 1, 3, ...,
    the total a multiple of 10.

    >>> gtin("4006381333931"), gtin("036000291452"), gtin("4006381333932")
    (True, True, False)
    """
    total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(reversed(digits)))
    return len(digits) >= 2 and total % 10 == 0


CHECKSUMS: dict[str, Callable[[str], bool]] = {"luhn": luhn, "verhoeff": verhoeff, "gtin": gtin}
