"""Each command's examples: the Examples section of its --help (cli.py) and of the man page
(packaging/man.py)."""

from __future__ import annotations

# The words after the program's name, and what the line does (a line fits 80 columns).
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "copy": [
        ("copy -s prod -d staging myapp:2", "contexts or ssh hosts"),
        ("copy -d ssh://deploy@host app:2 db:2", "from the local engine"),
        ("copy -s a -d b -d c myapp:2", "one export, two hosts"),
    ],
    "push": [
        ("push myserver myapp:2", "to an ssh host or a context"),
        ("push --dry-run myserver myapp:2", "what would travel"),
        ("push web1,web2,web3 myapp:2", "one export to three hosts"),
        ("push -f compose.yaml prod", "a Compose project's images"),
        ("push --json myserver myapp:2", "JSON lines, for scripts"),
    ],
    "pull": [
        ("pull prod myapp:2", "into the local one"),
        ("pull --platform linux/arm64 ci myapp:2", "one platform"),
    ],
    "version": [("version", "which docker-d2d this is")],
    "completion": [("completion bash > ~/.bash_completion.d/docker-d2d", "bash")],
    "plugin install": [
        ("plugin install", "your docker CLI runs it"),
        ("plugin install --system", "every user's does"),
    ],
    "plugin uninstall": [("plugin uninstall", "the link goes again")],
}


def examples(prog: str, command_name: str) -> str:
    """The Examples section of a command's help."""
    lines = EXAMPLES.get(command_name, [])
    width = max((len(words) for words, _ in lines), default=0)
    return "Examples:\n" + "\n".join(f"  {prog} {words.ljust(width)}   # {what}" for words, what in lines)
