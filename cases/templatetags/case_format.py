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
