from django import template

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """0.0123 → "1.2 %"; None → "—" (nothing counted yet)."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f} %"
