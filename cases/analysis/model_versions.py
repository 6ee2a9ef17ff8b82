"""Which model version the workers use: activation is a write with an audit event."""

from django.db import transaction

from cases.audit.trail import audit_record
from classifier.models import ModelVersion
from classifier.registry import active_version


@transaction.atomic
def model_activate(*, version: ModelVersion, by=None) -> ModelVersion:
    """Make `version` the one active model of its kind (workers pick it up at their next batch)."""
    # Every version of the kind locked first: two activations run one after the other.
    list(ModelVersion.objects.select_for_update().filter(kind=version.kind).order_by("pk"))
    previous = active_version(version.kind)
    if previous is not None and previous.pk == version.pk:
        return version
    if previous is not None:
        previous.is_active = False
        previous.save(update_fields=["is_active"])
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    version.is_active = True
    version.save(update_fields=["is_active"])
    audit_record(
        actor=by,
        action="model.activated",
        obj=version,
        before={"active": previous.name if previous else None},
        after={"active": version.name, "sha256": version.sha256, "kind": version.kind},
    )
    return version
