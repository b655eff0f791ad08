"""docker-d2d(1), the man page, written from the same click tree as `--help` (docker_d2d/app/cli.py:
the commands, their options and help, their examples). Run `.venv/bin/python packaging/man.py` to
rewrite packaging/docker-d2d.1; tests/unit/app/test_man_page.py checks that it matches the CLI.

Install: `install -Dm644 packaging/docker-d2d.1 /usr/local/share/man/man1/docker-d2d.1`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parent / "docker-d2d.1"
PROG = "docker d2d"

EXIT_STATUS = [
    ("0", "success"),
    ("1", "failure: one line on stderr naming the side, the endpoint and the cause"),
    ("2", "bad usage, address or context"),
    ("130", "interrupted (Ctrl-C, or the docker CLI's cancellation)"),
    ("143, 129", "stopped by SIGTERM, SIGHUP (128 + the signal)"),
]
ENVIRONMENT = [
    ("DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CONFIG", "the local engine and the Docker config, as docker reads them"),
    ("DOCKER_TLS_VERIFY, DOCKER_TLS, DOCKER_CERT_PATH", "TLS for tcp, as docker reads them"),
    ("D2D_CONNECT_TIMEOUT, D2D_STALL_TIMEOUT", "--connect-timeout and --stall-timeout"),
]


def escape(text: str) -> str:
    """Text as roff shows it: backslashes and dashes kept, no line taken for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _metavar(param: Any) -> str:
    if getattr(param, "is_flag", False):
        return ""
    if param.metavar:
        return str(param.metavar)
    choices = getattr(param.type, "choices", None)
    if choices:
        return "|".join(str(c.value if isinstance(c, Enum) else c) for c in choices)
    return "VALUE"


def _option(param: Any) -> list[str]:
    names = ", ".join(f"\\fB{escape(n)}\\fR" for n in sorted(param.opts, key=len))
    value = _metavar(param)
    lines = [".TP", names + (f" \\fI{escape(value)}\\fR" if value else "")]
    help_text = param.help or ""
    extra = []
    default = param.default
    if param.show_default is not False and not getattr(param, "is_flag", False) and default not in (None, "", ()):
        extra.append(f"default: {default.value if isinstance(default, Enum) else default}")
    if param.envvar:
        extra.append(f"env {param.envvar}")
    lines.append(escape(help_text + (f" ({'; '.join(extra)})" if extra else "")))
    return lines


def _synopsis(path: str, command: Any) -> str:
    words = [f"\\fB{escape(path)}\\fR"]
    if any(p.param_type_name == "option" for p in command.params):
        words.append("[\\fIOPTIONS\\fR]")
    for p in command.params:
        if p.param_type_name == "argument":
            name = str(p.metavar or p.name.upper())
            words.append(f"\\fI{escape(name)}\\fR" if p.required else f"[\\fI{escape(name)}\\fR]")
    if getattr(command, "commands", None):
        words.append("\\fICOMMAND\\fR")
    return " ".join(words)


def _command(path: str, command: Any) -> list[str]:
    lines = [f'.SS "{escape(path)}"', _synopsis(path, command), ".PP"]
    lines += [escape(paragraph) + "\n.PP" for paragraph in (command.help or "").strip().split("\n\n")]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    for p in arguments:
        lines += [".TP", f"\\fI{escape(str(p.metavar or p.name.upper()))}\\fR", escape(p.help or "")]
    for p in command.params:
        if p.param_type_name == "option" and not p.hidden:
            lines += _option(p)
    if command.epilog:
        heading, *examples = command.epilog.splitlines()
        lines += [".PP", escape(heading), ".PP", ".RS 4", ".nf"]
        lines += [escape(e.strip()) for e in examples]
        lines += [".fi", ".RE"]
    return lines


def _walk(path: str, command: Any) -> list[str]:
    subcommands = getattr(command, "commands", {})
    lines = _command(path, command) if not subcommands else []
    for name, sub in subcommands.items():
        if not sub.hidden:
            lines += _walk(f"{path} {name}", sub)
    return lines


def render() -> str:
    from docker_d2d.app.cli import command

    root = command(PROG)
    lines = [
        '.TH DOCKER\\-D2D 1 "" "docker\\-d2d" "User Commands"',
        ".SH NAME",
        "docker\\-d2d \\- " + escape((root.help or "").strip().rstrip(".")),
        ".SH SYNOPSIS",
        "\\fBdocker d2d\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]",
        ".br",
        "\\fBdocker\\-d2d\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]",
        ".SH DESCRIPTION",
        escape(
            "docker-d2d talks to both engines' APIs, streams the source's export, drops the layers the "
            "destination holds, loads the rest and verifies the result before it sets any tag. It runs as a "
            "Docker CLI plugin (docker d2d) and on its own (docker-d2d), the same in both. Docker's global "
            "flags (--context, -H, --tls...) go before the command."
        ),
        ".SH COMMANDS",
    ]
    for name, sub in root.commands.items():
        if not sub.hidden:
            lines += _walk(f"{PROG} {name}", sub)
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", escape(meaning)]
    lines.append(".SH ENVIRONMENT")
    for names, meaning in ENVIRONMENT:
        lines += [".TP", f"\\fB{escape(names)}\\fR", escape(meaning)]
    lines += [".SH SEE ALSO", "\\fBdocker\\fR(1), \\fBdocker\\-context\\fR(1)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    PAGE.write_text(render())
    print(PAGE)
