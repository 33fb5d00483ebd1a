"""Policy schema, process settings and policy files.

Time zone rules come from the pinned `tzdata` wheel only, never from the host's tz database: the
same ticket must compute the same deadlines on every worker, before and after an OS upgrade.
"""

import zoneinfo

zoneinfo.reset_tzpath(to=())
