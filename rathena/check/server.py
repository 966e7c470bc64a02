"""A throw-away rAthena server next to an operator's built tree, never written into it.

The servers chdir to the directory of argv[0] and read `conf/`, `db/`, `npc/` from there, so the
throw-away tree links the binaries and the data directories of the built tree and holds its own
`conf/import/*.txt` (our database, loopback ports, our scripts), `log/` and `aiworld-npc/`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPTS_DIR = Path(__file__).parents[1] / "npc" / "custom" / "ai-world"
SCHEMA_FILE = Path(__file__).parents[1] / "sql" / "ai_world.sql"
SERVERS = ("login-server", "char-server", "map-server")
OUR_NPC_DIR = "aiworld-npc"
# Lines of map-server's output that mean a script or the database went wrong. Its exit code is 0
# even then, so the output is what tells.
TROUBLE = re.compile(r"\[(Error|Warning)\]|script error|Missing .* curly|returned failure", re.I)
RUN_ONCE_TIMEOUT_SECONDS = 600


class CheckFailed(Exception):
    """The check found something wrong; the message says what."""


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    user: str
    password: str
    name: str

    def client_args(self) -> list[str]:
        return [
            "mariadb",
            f"--host={self.host}",
            f"--port={self.port}",
            f"--user={self.user}",
            f"--password={self.password}",
        ]

    def run_sql(self, sql: str) -> str:
        database = [self.name] if self.name else []
        return _run([*self.client_args(), "--batch", "--skip-column-names", *database, "-e", sql]).stdout

    def import_file(self, path: Path) -> None:
        with path.open("rb") as source:
            _run([*self.client_args(), self.name], stdin=source)


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(args[:1] + args[5:])} failed: {done.stderr.strip()[:500]}")
    return done


@dataclass(frozen=True)
class Ports:
    login: int
    char: int
    map: int


def server_conf(db: Database, ports: Ports) -> dict[str, str]:
    """Our `conf/import/*.txt`: the check's own database, loopback only, no pincode, no @command log
    (console @-commands crash this build otherwise), our two scripts."""
    sql = "".join(
        f"{prefix}_ip: {db.host}\n{prefix}_port: {db.port}\n{prefix}_id: {db.user}\n{prefix}_pw: {db.password}\n{prefix}_db: {db.name}\n"
        for prefix in ("login_server", "ipban_db", "char_server", "map_server", "web_server", "log_db")
    )
    return {
        "inter_conf.txt": sql,
        "login_conf.txt": f"bind_ip: 127.0.0.1\nlogin_port: {ports.login}\n",
        "char_conf.txt": (
            f"bind_ip: 127.0.0.1\nlogin_ip: 127.0.0.1\nlogin_port: {ports.login}\nchar_ip: 127.0.0.1\n"
            f"char_port: {ports.char}\npincode_enabled: no\nserver_name: AIWorldCheck\n"
        ),
        "map_conf.txt": (
            f"bind_ip: 127.0.0.1\nchar_ip: 127.0.0.1\nchar_port: {ports.char}\nmap_ip: 127.0.0.1\nmap_port: {ports.map}\n"
            f"npc: {OUR_NPC_DIR}/ai_world.txt\nnpc: {OUR_NPC_DIR}/ai_world_npcs.txt\n"
        ),
        "log_conf.txt": "log_commands: no\n",
    }


def check_built(rathena_dir: Path) -> None:
    missing = [name for name in SERVERS if not (rathena_dir / name).is_file()]
    if missing:
        raise CheckFailed(f"{rathena_dir} has no {', '.join(missing)}: build rAthena there first")


class ServerTree:
    def __init__(self, rathena_dir: Path, root: Path) -> None:
        self.source = rathena_dir.resolve()
        self.root = root
        check_built(self.source)

    def build(self, db: Database, ports: Ports, with_our_scripts: bool = True) -> None:
        """Links to the built tree, and files of our own where the servers read or write."""
        self.root.mkdir(parents=True, exist_ok=True)
        for entry in self.source.iterdir():
            if entry.name in ("conf", "db", "log", OUR_NPC_DIR) or entry.name.startswith("."):
                continue
            link = self.root / entry.name
            if not link.exists():
                link.symlink_to(entry)
        # conf/ and db/: the built tree's files, plus an import/ of our own (from rAthena's templates).
        for directory in ("conf", "db"):
            mine = self.root / directory
            mine.mkdir(exist_ok=True)
            for entry in (self.source / directory).iterdir():
                if entry.name != "import" and not (mine / entry.name).exists():
                    (mine / entry.name).symlink_to(entry)
            imports = mine / "import"
            if not imports.exists():
                shutil.copytree(self.source / directory / "import-tmpl", imports)
        for name, text in server_conf(db, ports).items():
            target = self.root / "conf" / "import" / name
            if not with_our_scripts and name == "map_conf.txt":
                text = "".join(line + "\n" for line in text.splitlines() if not line.startswith("npc:"))
            target.write_text(text)
        (self.root / "log").mkdir(exist_ok=True)
        ours = self.root / OUR_NPC_DIR
        ours.mkdir(exist_ok=True)
        for script in SCRIPTS_DIR.glob("*.txt"):
            shutil.copy(script, ours / script.name)

    def run_once(self) -> list[str]:
        """`map-server --run-once`: parses every script, runs OnInit, exits; its output lines."""
        done = subprocess.run(
            [str(self.root / "map-server"), "--run-once"],
            cwd=self.root,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=RUN_ONCE_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
        return _plain(done.stdout + done.stderr).splitlines()

    def command(self, server: str) -> list[str]:
        return [str(self.root / server)]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _plain(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "")


def trouble_lines(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if TROUBLE.search(line)]


def new_trouble(baseline: list[str], with_ours: list[str]) -> list[str]:
    """Trouble that our scripts and tables bring: what the run with them prints beyond the stock
    run's trouble (compared without numbers that differ between runs, like timings and counts)."""

    def key(line: str) -> str:
        return re.sub(r"\d+", "#", line)

    known = {key(line) for line in trouble_lines(baseline)}
    return [line for line in trouble_lines(with_ours) if key(line) not in known]
