"""`RATHENA_DIR=/path/to/rathena OPENKORE_DIR=/path/to/openkore python -m rathena.check` (or
`make rathena-check`): our scripts and tables on the operator's own built rAthena, with the service,
the bridge and a real client. Nothing is written into either tree; everything the check makes lives
in a throw-away directory next to the rAthena tree and a database of its own, both removed at the
end (kept when the check fails, to read the logs)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from aiworld.config import Settings
from rathena.check.client import OBTAIN_HINT, check_openkore
from rathena.check.live import Check, Report
from rathena.check.server import CheckFailed, check_built

USAGE = (
    "RATHENA_DIR is not set: point it at a built rAthena tree (login-server, char-server and map-server in it), e.g.\n"
    "  RATHENA_DIR=$HOME/rathena OPENKORE_DIR=$HOME/.cache/openkore make rathena-check\n"
    "The database named by AIWORLD_DB_HOST/PORT/USER/PASSWORD must let that user create a database."
)


def main() -> int:
    if not os.environ.get("RATHENA_DIR"):
        print(USAGE, file=sys.stderr)
        return 2
    if not os.environ.get("OPENKORE_DIR"):
        print(f"OPENKORE_DIR is not set. {OBTAIN_HINT}", file=sys.stderr)
        return 2
    rathena_dir = Path(os.environ["RATHENA_DIR"]).resolve()
    openkore_dir = Path(os.environ["OPENKORE_DIR"]).resolve()
    try:
        check_openkore(openkore_dir)
        check_built(rathena_dir)
    except CheckFailed as failure:
        print(f"rathena-check: {failure}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="aiworld-rathena-check-", dir=rathena_dir.parent))
    report = Report()
    check = Check(rathena_dir, openkore_dir, work, Settings(), report)
    passed = False
    try:
        report.step(f"throw-away server tree {work}, database {check.db.name}")
        check.create_database()
        placed = check.lint()
        check.start_service()
        check.start_game()
        check.registration_starts_workflows(placed)
        check.log_in()
        check.event_to_remembered_action()
        check.news_announced_once()
        transcript = check.dialogue()
        check.actions()
        check.burst()
        check.late_reply()
        check.castle_and_sale_reported()
        check.quiet_console()
        report.step("the client's dialogue, as OpenKore printed it:")
        for line in transcript:
            report.detail(line)
        passed = True
    except CheckFailed as failure:
        print(f"\nrathena-check FAILED: {failure}\nlogs kept in {work}", file=sys.stderr)
    finally:
        if check.client is not None:
            check.client.stop()
        check.children.stop()
        check.forget_state()
        check.drop_database()
        if passed:
            shutil.rmtree(work, ignore_errors=True)
    if passed:
        print("\nrathena-check: all proofs passed")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
