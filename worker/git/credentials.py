"""Git credentials kept out of every file: the mirror stores its origin's URL without
them, and git gets them only on the command line of the one process that talks to
the origin (clone, fetch, push, ls-remote), from that process's environment.

A suite can read the mirror (its worktree's `.git` points into it), so a
`https://user:token@host/...` URL in the mirror's config, FETCH_HEAD or a reflog
would hand it the token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

# Answers git's `get` with the two variables of this process's environment; ignores
# `store` and `erase`, so nothing is ever written anywhere.
_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'printf "username=%s\\npassword=%s\\n" "$TESTGATE_GIT_USERNAME" "$TESTGATE_GIT_PASSWORD"; }; f'
)


@dataclass(frozen=True)
class GitAuth:
    """What the origin's URL carried before the `@`, percent-decoded."""

    username: str = field(repr=False)
    password: str = field(repr=False)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.username, self.password) if s)


@dataclass(frozen=True)
class Origin:
    url: str  # never holds credentials
    auth: GitAuth | None = field(default=None, repr=False)

    def args(self) -> list[str]:
        """`-c` options for a git process that talks to the origin: only our helper
        answers (the empty value drops any helper a config file names)."""
        if self.auth is None:
            return []
        return ["-c", "credential.helper=", "-c", f"credential.helper={_HELPER}"]

    def env(self) -> dict[str, str]:
        """The variables the helper reads, for that one process's environment."""
        if self.auth is None:
            return {}
        return {
            "TESTGATE_GIT_USERNAME": self.auth.username,
            "TESTGATE_GIT_PASSWORD": self.auth.password,
        }


def split_origin(url: str) -> Origin:
    """`url` without the `user:password@` of an http(s) URL, and what it held."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return Origin(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    public = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return Origin(public, GitAuth(unquote(user), unquote(password)))
