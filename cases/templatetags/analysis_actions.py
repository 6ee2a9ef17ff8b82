"""Template helpers for the analysis actions on the case page."""

from django import template

from cases.analysis.reanalysis import can_reanalyse as _can_reanalyse

register = template.Library()


@register.filter
def can_reanalyse(user) -> bool:
    return _can_reanalyse(user)
