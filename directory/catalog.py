"""The catalog: the desk's teams and the products they serve.

One copy of each name: the menu's option 6 (`PRODUCT_TEAMS`), the directory's
validation and the cache's case facts all read it here.
"""

from __future__ import annotations

GENERAL = "general"
HOSTING = "hosting"
# In the published policy's order: option 6's sub-menu keys 1-7.
ADDON_TEAMS = (
    "food-service",
    "fees",
    "fram",
    "online-payments",
    "finance",
    "school-store",
    "activity-registration",
)
ALL_TEAMS = (GENERAL, HOSTING, *ADDON_TEAMS)
# Option 6's sub-menu: the key a caller presses -> the add-on team it reaches.
PRODUCT_TEAMS = {str(key): team for key, team in enumerate(ADDON_TEAMS, start=1)}

CORE_PRODUCT = "campus"
CASE_STATUSES = ("new", "open", "pending", "on-hold", "resolved", "closed")
PRIORITIES = ("critical", "high", "medium", "low")

_PRODUCT_NAMES: dict[str, str] = {CORE_PRODUCT: CORE_PRODUCT, HOSTING: HOSTING}
for _team in ADDON_TEAMS:
    _PRODUCT_NAMES[_team] = _team
    _PRODUCT_NAMES[_team.replace("-", " ")] = _team
    _PRODUCT_NAMES[_team.replace("-", "")] = _team


def canonical_product(product: str) -> str | None:
    """The product's stored name ("campus", "hosting" or an add-on team), None if unknown."""
    if not isinstance(product, str):
        return None
    spelled = " ".join(product.strip().lower().replace("_", " ").split())
    return _PRODUCT_NAMES.get(spelled) or _PRODUCT_NAMES.get(spelled.replace(" ", "-"))


def team_for_product(product: str) -> str | None:
    """The team serving a product: campus → general, an add-on → its team, else None."""
    canonical = canonical_product(product)
    if canonical is None:
        return None
    return GENERAL if canonical == CORE_PRODUCT else canonical
