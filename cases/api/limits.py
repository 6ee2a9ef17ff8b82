"""Pagination and throttling of the API (settings.REST_FRAMEWORK names these classes).

Kept apart from cases.api.schema: DRF imports these while its own views module loads.
"""

from django.conf import settings
from rest_framework.pagination import PageNumberPagination
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500

    @property
    def page_size(self) -> int:
        return settings.REST_FRAMEWORK["PAGE_SIZE"]


class _RateFromSettings:
    """Rates read when a request is checked, so a changed setting applies at once (tests)."""

    def get_rate(self) -> str | None:
        return settings.API_THROTTLE_RATES.get(self.scope)


class UserThrottle(_RateFromSettings, UserRateThrottle):
    pass


class AnonThrottle(_RateFromSettings, AnonRateThrottle):
    pass
