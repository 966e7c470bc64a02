"""The AI World tables in rAthena's database (rathena/sql/ai_world.sql), installable from Python
for tests and first runs; operators import the same file with the mariadb client."""

from __future__ import annotations

import warnings
from pathlib import Path

import aiomysql

SCHEMA_FILE = Path(__file__).parents[1] / "rathena" / "sql" / "ai_world.sql"


def schema_statements(path: Path = SCHEMA_FILE) -> list[str]:
    """The file's statements, split on semicolons outside quotes and `--` comments (the comments
    explain the tables and may contain semicolons themselves)."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        index = 0
        while index < len(line):
            char = line[index]
            if quote:
                quote = None if char == quote else quote
            elif char in "'`\"":
                quote = char
            elif line.startswith("-- ", index) or line[index:] == "--":
                break
            elif char == ";":
                statements.append("".join(current).strip())
                current = []
                index += 1
                continue
            current.append(char)
            index += 1
        current.append("\n")
    statements.append("".join(current).strip())
    return [statement for statement in statements if statement]


async def install_schema(connection: aiomysql.Connection) -> None:
    """Create the tables; safe to run again on a database that has them."""
    with warnings.catch_warnings():
        # Running it again is the point of IF NOT EXISTS: MariaDB's note says so, nothing more.
        warnings.filterwarnings("ignore", message=r"Table '.*' already exists")
        async with connection.cursor() as cursor:
            for statement in schema_statements():
                await cursor.execute(statement)
    await connection.commit()
