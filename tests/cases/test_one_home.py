"""Rules that lived in two to four places and drifted apart have one home each (issue 12.3).

These read the sources of `cases/` (migrations aside): a second copy of a rule fails here before it
can drift. The behaviour each home carries is tested beside it (test_reviews, test_permissions).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for p in (ROOT / "cases").rglob("*.py") if "migrations" not in p.parts)


def _offenders(pattern: str, allowed: set[str]) -> list[str]:
    found = []
    for path in SOURCES:
        name = path.relative_to(ROOT).as_posix()
        if name in allowed:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{name}:{n}: {line.strip()}")
    return found


def test_the_sources_are_found():
    assert len(SOURCES) > 30


@pytest.mark.parametrize(
    "pattern",
    [
        r"groups\.(filter|values_list|exists)",  # who holds a role
        r"members(=|__|\.filter)",  # who belongs to a site
        r"def (user_sites|user_has_role|is_reviewer|is_admin|require_site_member|can_write)\b",
        r"""["'](reviewer|clinician|admin)["'] in """,
        r"_ROLE\s*=",
    ],
)
def test_roles_and_site_membership_live_in_cases_access(pattern):
    assert _offenders(pattern, {"cases/access.py"}) == []


def test_the_four_eyes_rule_is_stated_once():
    pattern = r"(filter|exclude)\(.*\b(uploaded_by|created_by)=(user|by)\b"
    assert _offenders(pattern, {"cases/review/selectors.py"}) == []
    assert _offenders(r"def (uploaded_by|four_eyes_blocked)\b", {"cases/review/selectors.py"}) == []


def test_pending_image_statuses_are_image_pending():
    assert _offenders(r"Status\.QUEUED.*Status\.PROCESSING", {"cases/models.py"}) == []


def test_stored_paths_are_built_by_the_upload_to_callables():
    assert _offenders(r"""f["'](cases|reports)/""", {"cases/models.py"}) == []
    assert _offenders(r"default_storage\.save\(", {"cases/audit/checkpoints.py"}) == []


def test_file_digests_come_from_one_function():
    # The audit trail's hash chain hashes events, not files.
    allowed = {"cases/storage.py", "cases/audit/trail.py", "cases/audit/checkpoints.py"}
    assert _offenders(r"hashlib\.sha256\(", allowed) == []


def test_the_active_model_is_looked_up_by_active_version():
    assert _offenders(r"is_active=True", set()) == []
