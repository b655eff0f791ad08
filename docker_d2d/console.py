"""Output: plain lines off a TTY, live bars on one, JSON lines for scripts, nothing with -q.

Diagnostics and progress go to stderr; the result summary goes to stdout.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from typing import Any, TextIO

from .copy import CopyResult
from .endpoint import Endpoint
from .fanout import FleetResult
from .model import EngineInfo, human_size, short
from .plan import Decision, TransferPlan

OUTPUT_LOCK = threading.Lock()


class BaseReporter:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._estimates: dict[str, int | None] = {}
        self._total = 0
        self._positions: dict[str, int] = {}
        self._seen = 0
        self._sent: dict[str, int] = {}

    # Reporter protocol ------------------------------------------------------------------
    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None:
        pass

    def planned(self, plan: TransferPlan) -> None:
        layers = plan.unique_layers()
        self._estimates = {d: lay.size for d, lay in layers.items()}
        self._total = len(layers)
        self._positions = {d: i for i, d in enumerate(layers, 1)}

    def note(self, message: str) -> None:
        print(f"note: {message}", file=self.err)

    def layer_skipped(self, key: str, size: int) -> None:
        pass

    def layer_started(self, key: str, size: int) -> None:
        self._sent[key] = 0

    def layer_advanced(self, key: str, nbytes: int) -> None:
        self._sent[key] = self._sent.get(key, 0) + nbytes

    def layer_finished(self, key: str) -> None:
        pass

    # rendering --------------------------------------------------------------------------
    def dry_run(self, plan: TransferPlan) -> None:
        print(render_plan(plan), file=self.out)

    def finished(self, result: CopyResult) -> None:
        print(render_summary(result), file=self.out)

    def fleet_finished(self, fleet: FleetResult) -> None:
        if not fleet.dry_run:
            print(render_fleet(fleet), file=self.out)

    def _next(self, key: str) -> str:
        """`i/n`: the layer's place in the image (layers arrive in the export's order, not the image's).
        A blob we cannot name yet (a compressed one) is numbered by arrival."""
        self._seen += 1
        return f"{self._positions.get(key, self._seen)}/{self._total}"


class PlainReporter(BaseReporter):
    """Line per layer, like the original tool: `1/23 511136ea3c... Already exists`."""

    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None:
        print(f"{side}: {endpoint} — {info.describe()}", file=self.err)

    def layer_skipped(self, key: str, size: int) -> None:
        print(f"{self._next(key)} {short(key, 10)}... Already exists", file=self.err, flush=True)

    def layer_finished(self, key: str) -> None:
        estimate = self._estimates.get(key)
        about = f" / ~ {human_size(estimate)}" if estimate else ""
        sent = human_size(self._sent.get(key, 0))
        print(f"{self._next(key)} {short(key, 10)}... {sent}{about}", file=self.err, flush=True)


class QuietReporter(BaseReporter):
    def note(self, message: str) -> None:
        pass

    def dry_run(self, plan: TransferPlan) -> None:
        pass

    def finished(self, result: CopyResult) -> None:
        pass

    def fleet_finished(self, fleet: FleetResult) -> None:
        pass


class JsonReporter(BaseReporter):
    """One JSON object per line on stdout, for scripts and CI. `fields` go into every event (the
    destination, when there are several)."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, **fields: Any) -> None:
        super().__init__(out, err)
        self.fields = fields

    def _emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **self.fields, **fields}) + "\n"
        with OUTPUT_LOCK:  # several destinations report from their own threads: whole lines only
            self.out.write(line)
            self.out.flush()

    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None:
        self._emit(
            "connected",
            side=side,
            endpoint=str(endpoint),
            engine=info.kind.value,
            version=info.version,
            api_version=info.api_version,
        )

    def planned(self, plan: TransferPlan) -> None:
        super().planned(plan)
        self._emit("plan", **plan_dict(plan))

    def note(self, message: str) -> None:
        self._emit("note", message=message)

    def layer_skipped(self, key: str, size: int) -> None:
        self._emit("layer", id=key, status="exists", size=size)

    def layer_started(self, key: str, size: int) -> None:
        super().layer_started(key, size)
        self._last = time.monotonic()
        self._emit("layer", id=key, status="sending", size=size, sent=0)

    def layer_advanced(self, key: str, nbytes: int) -> None:
        super().layer_advanced(key, nbytes)
        if time.monotonic() - self._last > 0.5:  # keep the stream readable on big layers
            self._last = time.monotonic()
            self._emit("layer", id=key, status="sending", sent=self._sent[key])

    def layer_finished(self, key: str) -> None:
        self._emit("layer", id=key, status="sent", sent=self._sent.get(key, 0))

    def dry_run(self, plan: TransferPlan) -> None:
        pass  # the plan event carries it

    def finished(self, result: CopyResult) -> None:
        self._emit("result", **result_dict(result))

    def failed(self, error: str) -> None:
        self._emit("result", error=error)

    def fleet_finished(self, fleet: FleetResult) -> None:
        self._emit("fleet", **fleet_dict(fleet))


class RichReporter(BaseReporter):
    """Live bars per layer and overall, on a TTY."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        super().__init__(out, err)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console(file=self.err)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None

    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None:
        self.console.print(f"[bold]{side}[/]: {endpoint} — {info.describe()}")

    def planned(self, plan: TransferPlan) -> None:
        super().planned(plan)
        if plan.exported:
            self.progress.start()
            self._overall = self.progress.add_task("total", total=plan.bytes_to_send or None)

    def layer_skipped(self, key: str, size: int) -> None:
        self.progress.console.print(f"{self._next(key)} {short(key, 10)}... Already exists")

    def layer_started(self, key: str, size: int) -> None:
        super().layer_started(key, size)
        self._tasks[key] = self.progress.add_task(f"{self._next(key)} {short(key, 10)}", total=size)

    def layer_advanced(self, key: str, nbytes: int) -> None:
        super().layer_advanced(key, nbytes)
        self.progress.advance(self._tasks[key], nbytes)
        if self._overall is not None:
            self.progress.advance(self._overall, nbytes)

    def finished(self, result: CopyResult) -> None:
        self.progress.stop()
        super().finished(result)

    def close(self) -> None:
        self.progress.stop()


def plan_dict(plan: TransferPlan) -> dict[str, Any]:
    return {
        "images": [
            {
                "ref": p.ref.raw,
                "source_id": p.source.id,
                "present": p.present_as is not None,
                "layers": [
                    {"diff_id": lay.diff_id, "action": lay.decision.value, "size": lay.size} for lay in p.layers
                ],
            }
            for p in plan.images
        ],
        "bytes_to_send": plan.bytes_to_send,
        "bytes_saved": plan.bytes_saved,
        "sizes_estimated": True,
    }


def result_dict(result: CopyResult) -> dict[str, Any]:
    sent = sum(t.layers_sent for t in result.transfers)
    skipped = sum(t.layers_skipped for t in result.transfers[-1:])
    sizes = {lay.diff_id: lay.size or 0 for p in result.plan.images for lay in p.layers}
    image_size = sum(sizes.values())
    return {
        "tagged": result.tagged,
        "untagged": result.untagged,
        "layers_sent": sent,
        "layers_skipped": skipped,
        "bytes_sent": result.bytes_sent,
        "wire_bytes": result.wire_bytes,
        "compression": result.compression.value,
        "image_bytes": image_size,
        "transfers": len(result.transfers),
        "elapsed": round(result.elapsed, 3),
    }


def render_plan(plan: TransferPlan) -> str:
    lines = []
    for p in plan.images:
        lines.append(f"{p.ref.raw} ({short(p.source.id)}):" + (" already at the destination" if p.present_as else ""))
        for i, lay in enumerate(p.layers, 1):
            if lay.decision is Decision.SKIP:
                what = "Already exists"
            else:
                what = f"~ {human_size(lay.size)} to send" if lay.size is not None else "to send (size unknown)"
            lines.append(f"  {i}/{len(p.layers)} {short(lay.diff_id, 10)}... {what}")
    lines.append(f"to send: ~ {human_size(plan.bytes_to_send)}; saved: ~ {human_size(plan.bytes_saved)}")
    return "\n".join(lines)


def render_summary(result: CopyResult) -> str:
    d = result_dict(result)
    parts = []
    if result.tagged:
        parts.append("tagged " + ", ".join(result.tagged))
    if result.untagged:
        parts.append("untagged (digest/id reference): " + ", ".join(result.untagged))
    layers = f"{d['layers_sent']} layer(s) sent, {d['layers_skipped']} already there"
    if not result.transfers:
        layers = "nothing to send: the destination has every image"
    size = f"sent {human_size(d['bytes_sent'])} of a ~ {human_size(d['image_bytes'])} image"
    if result.compression.value != "none" and result.transfers:
        size += f" ({human_size(result.wire_bytes)} on the wire, {result.compression.value})"
    extra = " (twice: see note)" if len(result.transfers) > 1 else ""
    return f"{'; '.join(parts)}\n{layers}; {size}{extra} in {result.elapsed:.1f}s"


class Prefixed(io.TextIOBase):
    """A text stream that starts every line with a prefix: one destination's lines among several,
    written whole (threads share the terminal)."""

    def __init__(self, stream: TextIO, prefix: str) -> None:
        self.stream = stream
        self.prefix = prefix
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            with OUTPUT_LOCK:
                self.stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        with OUTPUT_LOCK:
            self.stream.flush()


def render_fleet(fleet: FleetResult) -> str:
    """The table at the end of a run to several destinations."""
    rows = [("destination", "result", "layers", "sent", "on the wire", "time")]
    for host in fleet.hosts:
        if host.ok and host.result is not None:
            d = result_dict(host.result)
            wire = human_size(d["wire_bytes"]) if host.result.transfers else "-"
            layers = f"{d['layers_sent']} sent, {d['layers_skipped']} there"
            rows.append((str(host.endpoint), "ok", layers, human_size(d["bytes_sent"]), wire, f"{d['elapsed']:.1f}s"))
        else:
            rows.append((str(host.endpoint), "FAILED", str(host.error.message if host.error else "?"), "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    failed = len(fleet.failed)
    lines.append(
        f"{len(fleet.hosts)} destinations: {len(fleet.hosts) - failed} ok, {failed} failed; "
        f"read {human_size(fleet.export_bytes)} from the source once, in {fleet.elapsed:.1f}s"
    )
    return "\n".join(lines)


def fleet_dict(fleet: FleetResult) -> dict[str, Any]:
    return {
        "destinations": len(fleet.hosts),
        "failed": len(fleet.failed),
        "export_bytes": fleet.export_bytes,
        "elapsed": round(fleet.elapsed, 3),
    }
