"""A paginator whose count stops at a ceiling, so a page never pays for counting 100,000 rows."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.utils.functional import cached_property

# Beyond this many matches the list says "more than" and asks for narrower filters.
COUNT_CEILING = 10_000


class CappedPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        # COUNT over a LIMITed subquery: PostgreSQL stops reading at the ceiling.
        return self.object_list.order_by()[: COUNT_CEILING + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > COUNT_CEILING
