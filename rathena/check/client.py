"""A real game client for the check: OpenKore (GPL, Perl), driven through its console.

The operator provides OpenKore (OPENKORE_DIR); nothing of it is copied into this repository. Its
own files stay untouched: the check runs it in a folder of its own, with control, tables and
fields folders that link to OpenKore's and replace what this server needs otherwise:
* tables/servers.txt holds one server, this check's, type kRO_RagexeRE_2021_11_03 (PACKETVER 20211103);
* kRO's packet-length table is older than this server: it lacks the login reply 0x0AC4 and the
  character slots 0x082D, and gives the map login 0x0436 19 bytes where PACKETVER 20211103 has 23.
  laRO's table has this server's lengths: it is used, with kRO's lines for what it lacks;
* translated/kRO_english/quests.txt has a malformed UTF-8 byte, read here with it replaced.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rathena.check.server import CheckFailed

SERVER_TYPE = "kRO_RagexeRE_2021_11_03"
MASTER = "AIWorld check"
OBTAIN_HINT = (
    "OPENKORE_DIR must name an OpenKore checkout with XSTools built: "
    "git clone https://github.com/OpenKore/openkore ~/.cache/openkore && cd ~/.cache/openkore && "
    "python3 src/scons-local-3.1.2/scons.py   (needs perl, g++ and libcurl4-openssl-dev)"
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def check_openkore(openkore_dir: Path) -> None:
    if not (openkore_dir / "openkore.pl").is_file():
        raise CheckFailed(f"{openkore_dir} holds no openkore.pl. {OBTAIN_HINT}")
    if not list((openkore_dir / "src" / "auto" / "XSTools").glob("XSTools.so")):
        raise CheckFailed(f"XSTools is not built in {openkore_dir}. {OBTAIN_HINT}")


def _overlay(source: Path, target: Path, replaced: dict[str, bytes]) -> None:
    """`target` mirrors `source` with links, except the files in `replaced` (relative paths)."""
    target.mkdir(parents=True, exist_ok=True)
    own_dirs = {Path(path).parts[0] for path in replaced if len(Path(path).parts) > 1}
    for entry in source.iterdir():
        if entry.name in replaced or entry.name in own_dirs:
            continue
        (target / entry.name).symlink_to(entry)
    for name in own_dirs:
        inner = {
            str(Path(*Path(path).parts[1:])): data for path, data in replaced.items() if Path(path).parts[0] == name
        }
        _overlay(source / name, target / name, inner)
    for path, data in replaced.items():
        if len(Path(path).parts) == 1:
            (target / path).write_bytes(data)


@dataclass(frozen=True)
class Account:
    username: str
    password: str


def _config(openkore_dir: Path, account: Account, login_port: int) -> bytes:
    """OpenKore's own config.txt with the login and a bot that only does what it is told."""
    settings = {
        "master": MASTER,
        "server": "0",
        "username": account.username,
        "password": account.password,
        "char": "0",
        "attackAuto": "0",
        "route_randomWalk": "0",
        "itemsTakeAuto": "0",
        "itemsGatherAuto": "0",
        "sitAuto_idle": "0",
        "partyAuto": "0",
        "dealAuto": "0",
        "guildAutoDeny": "1",
        "autoResponse": "0",
        "teleportAuto_idle": "0",
        "lockMap": "",
        "autoTalkCont": "1",
        "verbose": "1",
        "autoRestart": "0",
    }
    lines = []
    for line in (openkore_dir / "control" / "config.txt").read_text(encoding="utf-8", errors="replace").splitlines():
        key = line.split(" ", 1)[0]
        lines.append(f"{key} {settings.pop(key)}" if key in settings else line)
    lines += [f"{key} {value}" for key, value in settings.items()]
    return ("\n".join(lines) + "\n").encode()


def _servers(login_port: int) -> bytes:
    return (
        f"[{MASTER}]\nip 127.0.0.1\nport {login_port}\nprivate 1\nmaster_version 1\nversion 1\n"
        f"serverType {SERVER_TYPE}\nserverEncoding Western\ncharBlockSize 175\n"
        "addTableFolders translated/kRO_english;kRO\n"
    ).encode()


class OpenKore:
    """One OpenKore process; its console lines are read on a thread and searched on demand."""

    def __init__(self, openkore_dir: Path, workdir: Path, account: Account, login_port: int) -> None:
        self.dir = openkore_dir.resolve()
        self.workdir = workdir
        self.lines: list[str] = []
        self._incoming: queue.Queue[str | None] = queue.Queue()
        tables = self.dir / "tables"
        laro = (tables / "laRO" / "recvpackets.txt").read_text(errors="replace").splitlines()
        known = {line.split(" ", 1)[0] for line in laro if line.strip()}
        kro = (tables / "kRO" / "recvpackets.txt").read_text(errors="replace").splitlines()
        packets = laro + [line for line in kro if line.strip() and line.split(" ", 1)[0] not in known]
        quests = (tables / "translated" / "kRO_english" / "quests.txt").read_bytes().decode("utf-8", errors="replace")
        _overlay(
            tables,
            workdir / "tables",
            {
                "servers.txt": _servers(login_port),
                "kRO/recvpackets.txt": ("\n".join(packets) + "\n").encode(),
                "translated/kRO_english/quests.txt": quests.encode(),
            },
        )
        shutil.copytree(self.dir / "control", workdir / "control", dirs_exist_ok=True)
        (workdir / "control" / "config.txt").write_bytes(_config(self.dir, account, login_port))
        _overlay(self.dir / "fields", workdir / "fields", {})  # OpenKore writes its path caches there
        (workdir / "plugins").mkdir(exist_ok=True)  # none: the profiles plugin would ask which one
        (workdir / "logs").mkdir(exist_ok=True)
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        args = [
            "perl",
            str(self.dir / "openkore.pl"),
            f"--control={self.workdir / 'control'}",
            f"--tables={self.workdir / 'tables'}",
            f"--plugins={self.workdir / 'plugins'}",
            f"--fields={self.workdir / 'fields'}",
            f"--logs={self.workdir / 'logs'}",
            "--interface=Console::Simple",
        ]
        self._process = subprocess.Popen(
            args,
            cwd=self.workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TERM": "dumb"},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw in self._process.stdout:
            self._incoming.put(_ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip("\r\n"))
        self._incoming.put(None)

    def _drain(self, timeout: float) -> bool:
        """Move what the client printed into `lines`; False once it has exited."""
        try:
            line = self._incoming.get(timeout=timeout)
        except queue.Empty:
            return True
        while True:
            if line is None:
                return False
            self.lines.append(line)
            try:
                line = self._incoming.get_nowait()
            except queue.Empty:
                return True

    def command(self, text: str) -> int:
        """Type a console command; returns the line index from which its effects show."""
        assert self._process is not None and self._process.stdin is not None
        self._drain(0)
        mark = len(self.lines)
        self.lines.append(f"> {text}")  # the transcript shows what was typed
        self._process.stdin.write(text.encode() + b"\n")
        self._process.stdin.flush()
        return mark

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> re.Match:
        """The first console line from `since` on that matches, waiting up to `timeout` seconds."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = since
        while True:
            for index in range(checked, len(self.lines)):
                found = compiled.search(self.lines[index])
                if found:
                    return found
            checked = max(checked, len(self.lines))
            left = deadline - time.monotonic()
            if left <= 0:
                tail = "\n    ".join(self.lines[-15:])
                raise CheckFailed(
                    f"OpenKore never printed /{pattern}/ within {timeout:.0f}s; its last lines:\n    {tail}"
                )
            if not self._drain(min(left, 0.5)):
                code = self._process.wait() if self._process else None
                raise CheckFailed(f"OpenKore exited (code {code}) before printing /{pattern}/")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        try:
            self.command("quit")
            self._process.wait(timeout=10)
        except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
            self._process.kill()
            self._process.wait()
