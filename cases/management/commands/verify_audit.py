from django.core.management.base import BaseCommand, CommandError

from cases.audit.trail import verify_chain
from cases.models import AuditEvent


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exits non-zero naming the first broken event."

    def handle(self, *args, **options) -> None:
        problem = verify_chain()
        if problem is not None:
            raise CommandError(f"Audit trail broken at event #{problem.seq}: {problem.message}")
        count = AuditEvent.objects.count()
        self.stdout.write(self.style.SUCCESS(f"Audit trail intact: {count} events verified."))
