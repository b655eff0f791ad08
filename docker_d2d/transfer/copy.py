"""A single copy: one source, one destination, one Transfer.

endpoints -> engines -> the images asked for -> plan -> Transfer (send, verify, tag).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..endpoint import Endpoint
from ..engine.pool import SSHPool
from ..engine.sides import connect_notes, found_node_note, node_instead, open_side
from ..errors import EngineError, SocketMissing, VerifyError
from ..model import parse_ref
from .job import CopyOptions, CopyResult, Reporter
from .requests import resolve
from .stores import source_for
from .transfer import Transfer, one_copy_at_a_time, plan_for, stale_holdings, tell_stale


def copy_images(
    source: Endpoint,
    destination: Endpoint,
    refs: Sequence[str],
    reporter: Reporter,
    options: CopyOptions,
    ssh: SSHPool,
) -> CopyResult:
    """Copy `refs` from `source` to `destination`; engines over ssh use the run's connections (`ssh`)."""
    started = time.monotonic()
    parsed = [parse_ref(r) for r in refs]
    with (
        open_side(source, "source", options.timeouts, ssh, options.local_engine) as src,
        open_side(destination, "destination", options.timeouts, ssh, options.local_engine) as dst,
        one_copy_at_a_time(destination, reporter, options),
    ):
        src_info = src.connect()
        reporter.connected("source", source, src_info)
        try:
            dst_info = dst.connect()
        except SocketMissing:
            node = node_instead(destination, "destination", options.timeouts, ssh)
            if node is None:
                raise
            dst, dst_info = node, node.connect()
            reporter.note(found_node_note(node))
        for note in connect_notes(src) + connect_notes(dst):
            reporter.note(note)
        reporter.connected("destination", destination, dst_info)
        platform = options.platform or dst_info.platform
        requested = [resolve(src, ref, platform, explicit=options.platform is not None) for ref in parsed]
        result = plan_for(src_info, dst, requested, reporter, options, src.all_images)
        if not options.dry_run:
            try:
                Transfer(source_for(src), dst, reporter, options, result).deliver()
            except (EngineError, VerifyError) as exc:
                if not stale_holdings(dst, result, exc):
                    raise
                tell_stale(dst, reporter, "planned again")
                result = plan_for(src_info, dst, requested, reporter, options, src.all_images)
                Transfer(source_for(src), dst, reporter, options, result).deliver()
    result.elapsed = time.monotonic() - started
    return result
