"""Validators shared by the models, the forms and the API serializers."""

import unicodedata

from django.core.exceptions import ValidationError

# Cc: control characters (CR, LF, tab, NUL, ESC ...); Cf: invisible format characters
# (zero-width, bidirectional overrides); Zl/Zp: the Unicode line and paragraph separators.
REFUSED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}


def validate_single_line(value: str) -> None:
    """Refuse line breaks and other control or invisible characters.

    A patient identifier is printed on reports, written into CSV rows and put in download file
    names: a CR/LF there splits a CSV row or a header, and invisible characters make two
    identifiers look the same.
    """
    bad = sorted({ch for ch in str(value) if unicodedata.category(ch) in REFUSED_CATEGORIES})
    if bad:
        names = ", ".join(f"U+{ord(ch):04X}" for ch in bad)
        raise ValidationError(
            "Use printable characters on one line only (found %(names)s).",
            code="control_character",
            params={"names": names},
        )
