"""Console users: `name:password-hash` entries from VENDORWATCH_CONSOLE_USERS or the file named by
VENDORWATCH_CONSOLE_USERS_FILE (one a line, or separated by spaces; '#' starts a comment). Hashes are werkzeug's
(scrypt by default; `vendorwatch console-user NAME` prints an entry). Nothing about users lives in the repo."""

from __future__ import annotations

from werkzeug.security import check_password_hash, generate_password_hash

from config.settings import Settings

# Checked when the name is unknown, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = generate_password_hash("vendorwatch-no-such-user")


class UsersError(ValueError):
    """The users' list cannot be read; the message says where and why, never a hash."""


def parse_users(text: str, where: str) -> dict[str, str]:
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        for entry in line.split("#", 1)[0].split():
            name, _, hashed = entry.partition(":")
            if not name or not hashed:
                raise UsersError(f"{where} line {number}: an entry is name:password-hash")
            if name in users:
                raise UsersError(f"{where} line {number}: user {name!r} is listed twice")
            users[name] = hashed
    return users


def load_users(settings: Settings) -> dict[str, str]:
    users: dict[str, str] = {}
    if settings.console_users:
        users.update(parse_users(settings.console_users, "VENDORWATCH_CONSOLE_USERS"))
    if settings.console_users_file is not None:
        path = settings.console_users_file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsersError(f"{path}: cannot read the console users ({exc.strerror})") from exc
        users.update(parse_users(text, str(path)))
    return users


def authenticate(users: dict[str, str], name: str, password: str) -> bool:
    hashed = users.get(name)
    matches = check_password_hash(hashed or _DUMMY_HASH, password)
    return hashed is not None and matches


def user_entry(name: str, password: str) -> str:
    if not name or ":" in name or any(c.isspace() for c in name):
        raise UsersError("a user name has no ':' and no spaces")
    return f"{name}:{generate_password_hash(password)}"
