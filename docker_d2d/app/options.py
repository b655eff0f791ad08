"""Docker's global flags (cli/flags/options.go), parsed the way the Go plugin helper does:
from the start of argv up to the first positional, so that both `docker --context x d2d push ...`
(as a plugin) and `docker-d2d --context x push ...` (standalone) work."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError

_VALUED = {
    "--config": "config",
    "-c": "context",
    "--context": "context",
    "-H": "hosts",
    "--host": "hosts",
    "-l": "log_level",
    "--log-level": "log_level",
    "--tlscacert": "tlscacert",
    "--tlscert": "tlscert",
    "--tlskey": "tlskey",
}
_BOOL = {"-D": "debug", "--debug": "debug", "--tls": "tls", "--tlsverify": "tlsverify"}


@dataclass
class GlobalOptions:
    config: str | None = None
    context: str | None = None
    hosts: list[str] = field(default_factory=list)
    log_level: str | None = None
    debug: bool = False
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None

    @property
    def tls_flags_set(self) -> bool:
        return bool(self.tls or self.tlsverify or self.tlscacert or self.tlscert or self.tlskey)


def split_global_flags(argv: list[str], opts: GlobalOptions | None = None) -> tuple[GlobalOptions, list[str]]:
    """Consume leading global flags (into `opts` if given); return them and the rest of argv
    (from the first positional, or the first flag we do not know, which belongs to a subcommand)."""
    opts = opts or GlobalOptions()
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _BOOL:
            setattr(opts, _BOOL[name], value.lower() not in ("false", "0") if eq else True)
            i += 1
            continue
        short_joined = len(arg) > 2 and arg[:2] in ("-c", "-H", "-l") and not arg.startswith("--")
        if name in _VALUED or short_joined:
            key = _VALUED[arg[:2]] if short_joined and not eq else _VALUED.get(name, "")
            if short_joined and not eq:
                value = arg[2:]
            elif not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"flag needs an argument: {arg}")
                value = argv[i + 1]
                i += 1
            if key == "hosts":
                opts.hosts.append(value)
            else:
                setattr(opts, key, value)
            i += 1
            continue
        break
    if opts.context and opts.hosts:
        raise UsageError('conflicting options: cannot specify both "--host" and "--context"')
    return opts, argv[i:]
