"""Template context for the navigation badges of the review workflow.

Add "cases.review.context.review_badges" to TEMPLATES context_processors. The values are lazy:
a page that does not show a badge costs no query, and one that shows it costs one.
"""

from collections.abc import Callable

from django.http import HttpRequest

from cases.review.selectors import notifications_unread, review_queue_new_count


class LazyCount:
    """A count computed on first use in a template and remembered for the rest of the render."""

    def __init__(self, compute: Callable[[], int]) -> None:
        self._compute = compute
        self._value: int | None = None

    def __call__(self) -> int:
        if self._value is None:
            self._value = self._compute()
        return self._value


def review_badges(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        # Unclaimed cases awaiting review that this reviewer may take (0 for non-reviewers).
        "review_queue_badge": LazyCount(lambda: review_queue_new_count(user)),
        # Unread notifications: signed off, sent back or reopened cases.
        "notification_badge": LazyCount(lambda: notifications_unread(user).count()),
    }
