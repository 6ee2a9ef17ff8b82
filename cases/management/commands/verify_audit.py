import re

from django.core.management.base import BaseCommand, CommandError

from cases.audit.checkpoints import checkpoint_latest, checkpoint_write
from cases.audit.trail import ChainProblem, hmac_key, verify_anchor, verify_chain
from cases.models import AuditEvent

HEAD = re.compile(r"^(\d+):([0-9a-f]{64})$")


class Command(BaseCommand):
    help = (
        "Verify the audit trail's hash chain, its head, an exported head (--expect-head) and the "
        "latest signed checkpoint; exits non-zero naming the first problem."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--expect-head",
            metavar="SEQ:HASH",
            help="a head exported earlier (the output's last line): that event must still exist "
            "with that hash",
        )
        parser.add_argument(
            "--write-checkpoint",
            action="store_true",
            help="after verifying, write a signed checkpoint of the head (needs AUDIT_HMAC_KEY)",
        )

    def handle(self, *args, expect_head=None, write_checkpoint=False, **options) -> None:
        expected = None
        if expect_head is not None:
            expected = HEAD.match(expect_head.strip().lower())
            if expected is None:
                raise CommandError(
                    f"--expect-head {expect_head!r}: give SEQ:HASH, e.g. 823:<64 hex digits>."
                )
        problem = verify_chain()
        if problem is None and expected is not None:
            seq, digest = int(expected[1]), expected[2]
            problem = verify_anchor(seq, digest, "the expected head")
        if problem is None:
            problem = self._check_checkpoint()
        if problem is not None:
            raise CommandError(f"Audit trail broken at event #{problem.seq}: {problem.message}")
        count = AuditEvent.objects.count()
        self.stdout.write(self.style.SUCCESS(f"Audit trail intact: {count} events verified."))
        if write_checkpoint:
            written = checkpoint_write()
            note = "no key, or nothing new since the latest"
            self.stdout.write(
                f"Checkpoint written: {written.name}" if written else f"No checkpoint ({note})."
            )
        last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        if last:
            self.stdout.write(f"Head: {last[0]}:{last[1]}")

    def _check_checkpoint(self):
        checkpoint = checkpoint_latest()
        if checkpoint is None:
            return None
        key = hmac_key()
        if key is None:
            self.stdout.write(f"Not checked ({checkpoint.describe()}): AUDIT_HMAC_KEY is not set.")
            return None
        if not checkpoint.is_signed_with(key):
            message = f"{checkpoint.describe()} is not signed with AUDIT_HMAC_KEY (forged?)"
            return ChainProblem(checkpoint.seq, message)
        problem = verify_anchor(checkpoint.seq, checkpoint.hash, f"the {checkpoint.describe()}")
        if problem is None:
            self.stdout.write(f"Matches the latest {checkpoint.describe()} at #{checkpoint.seq}.")
        return problem
