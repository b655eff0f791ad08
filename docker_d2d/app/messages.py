"""What an error says: the one line a failed run prints, made here for every kind of failure.

docker-d2d's own errors (errors.py) carry their facts; the command line's usage errors (typer's
parser) carry the command they belong to. Each becomes one line, in the docker CLI's manner
(`docker: 'docker push' requires 1 argument. See 'docker push --help'.`), on one line."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import D2DError, NameNotFound, printable

PREFIX = "docker-d2d: "
TAGS_LISTED = 8  # a repository with many tags: the first few, then how many more


def error_line(error: D2DError | str) -> str:
    """The line a failure prints: one line, the engines' text made harmless."""
    text = describe(error) if isinstance(error, D2DError) else error
    return PREFIX + printable(text)  # a line break is escaped too: one line


def describe(error: D2DError) -> str:
    """An error's message, with what it knows said in full."""
    if isinstance(error, NameNotFound):
        return _name_not_found(error)
    return str(error)


def _name_not_found(error: NameNotFound) -> str:
    text = str(error)
    if not error.tag_given:
        text += " (no tag given, so :latest was looked for)"
    if error.tags:
        return f"{text}; the source has {_listed(error.tags)}"
    return f"{text}; the source has no tag of {error.name.rpartition(':')[0]}"


def _listed(tags: Sequence[str]) -> str:
    shown = ", ".join(tags[:TAGS_LISTED])
    return shown + (f" and {len(tags) - TAGS_LISTED} more" if len(tags) > TAGS_LISTED else "")


def usage_line(message: str, command_path: str) -> str:
    """A usage error of `command_path` ("docker d2d push"): what is wrong, and where help is."""
    message = message.strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    return f"{message}. See '{command_path} --help'."


def swapped(command: str, prog: str, first: str, images: Sequence[str], role: str) -> str:
    """`push fx/app:2 myserver`: an image where the endpoint goes, the endpoint last."""
    fixed = " ".join([images[-1], first, *images[:-1]])
    return f"{first!r} is an image, not an engine: the {role} comes first ({prog} {command} {fixed})"


def endpoint_only(command: str, prog: str, word: str, role: str) -> str:
    """`push IMAGE`: the image was read as the endpoint and no image is left."""
    return (
        f"{command} needs a {role} and an image: {word!r} was read as the {role}, and no image was named "
        f"({prog} {command} {role.upper()} IMAGE...)"
    )
