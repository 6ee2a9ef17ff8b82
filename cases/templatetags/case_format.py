from django import template

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """0.0123 → "1.2 %"; None → "—" (nothing counted yet)."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f} %"


# The end of a file name is what tells cells apart ("…_cell_68.png"): a long name keeps its last
# NAME_TAIL characters whole and shortens only its beginning (CSS .name-head ellipsis).
NAME_TAIL = 18


@register.inclusion_tag("cases/_name.html")
def image_name(name: str) -> dict:
    """A name whose distinguishing end stays visible in a narrow card; the full name on hover."""
    name = name or ""
    split = max(0, len(name) - NAME_TAIL)
    return {"name": name, "head": name[:split], "tail": name[split:]}


AUDIT_LIST_SHOWN = 5


def _flat(value, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay whole (shown shortened by _shown)."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value} if prefix else {"": value}


def _shown(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        items = [_shown(v) if not isinstance(v, dict) else _compact(v) for v in value]
        more = len(items) - AUDIT_LIST_SHOWN
        text = ", ".join(items[:AUDIT_LIST_SHOWN])
        return f"{text} … and {more} more ({len(items)} in all)" if more > 0 else text or "none"
    return str(value)


def _compact(value: dict) -> str:
    return " ".join(f"{k}={_shown(v)}" for k, v in value.items())


@register.filter
def audit_changes(event) -> list[tuple[str, str, str]]:
    """An audit event's before/after as readable rows (field, before, after): only what changed
    when both exist, every field otherwise; numbers rounded, long lists shortened."""
    before, after = _flat(event.before or {}), _flat(event.after or {})
    keys = list(dict.fromkeys([*before, *after]))
    rows = []
    for key in keys:
        old, new = before.get(key), after.get(key)
        if event.before is not None and event.after is not None and old == new:
            continue
        rows.append((key.replace("_", " "), _shown(old), _shown(new)))
    return rows
