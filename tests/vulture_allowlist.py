"""Names vulture (``make lint``) reports unused that are kept on purpose: fields of results.

Each is a field of a dataclass that describes a result in full (who is asking, what a
reforecast was based on); no code reads it yet, but dropping it would make the record lie
by omission. Anything else vulture reports is dead code: delete it.
"""

from api.deps import Caller
from api.planning import PlanJob
from forecasting.plan import Reforecast
from forecasting.service import SeriesOutcome
from services.imports.mapping import CallsKind

Caller.authenticated  # noqa: B018
Reforecast.actual_calls  # noqa: B018
Reforecast.elapsed_intervals  # noqa: B018
SeriesOutcome.reforecast  # noqa: B018
CallsKind.callback_requested  # noqa: B018 - a mapping field, read by name
PlanJob.created_at  # noqa: B018  (shown by GET /api/v1/plans/{id} through asdict)
PlanJob.finished_at  # noqa: B018
