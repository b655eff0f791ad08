"""Output: plain lines off a TTY, live bars on one, JSON lines for scripts, nothing with -q.

Diagnostics and progress go to stderr; the result summary goes to stdout.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..endpoint import Endpoint
from ..formats.digests import human_size, short
from ..model import EngineInfo
from ..transfer.compress import Compression
from ..transfer.job import CopyResult, FleetResult, TagMove
from ..transfer.plan import Decision, TransferPlan

# Reentrant: a signal handler (the deferred interrupt's note) may print while its thread is printing.
OUTPUT_LOCK = threading.RLock()


class Held:
    """Lines held back until the run says something else (the engines it reached): a run that
    fails before that ends with its error line alone. One Held serves all reporters of a fleet."""

    def __init__(self) -> None:
        self._lines: list[Callable[[], None]] = []

    def hold(self, say: Callable[[], None]) -> None:
        with OUTPUT_LOCK:
            self._lines.append(say)

    def release(self) -> None:
        with OUTPUT_LOCK:
            lines, self._lines = self._lines, []
            for say in lines:
                say()


class BaseReporter:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, held: Held | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.held = held or Held()
        self._estimates: dict[str, int | None] = {}
        self._total = 0
        self._positions: dict[str, int] = {}
        self._seen = 0
        self._waiting: dict[int, str] = {}  # layer lines waiting for the lines of the layers below them
        self._said: set[int] = set()  # the places whose line is out
        self._sent: dict[str, int] = {}
        self._shown: set[str] = set()  # layers that have their line already
        self._read_from: dict[str, str] = {}  # how each layer sent is read (Reporter.layer_read_from)
        self._wire = 0
        self._read = 0  # uncompressed bytes of this transfer's body
        self._started = 0.0
        self.compression = Compression.NONE

    # Reporter protocol ------------------------------------------------------------------
    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None:
        pass

    def planned(self, plan: TransferPlan) -> None:
        layers = plan.unique_layers()
        self._estimates = {d: lay.size for d, lay in layers.items()}
        self._total = len(layers)
        self._positions = {d: i for i, d in enumerate(layers, 1)}

    def note(self, message: str) -> None:
        self.held.release()
        print(f"note: {message}", file=self.err)

    def sending(self, layers: dict[str, int | None], compression: Compression) -> None:
        self.compression = compression
        self._wire = self._read = 0
        self._started = time.monotonic()

    def wire_advanced(self, nbytes: int) -> None:
        self._wire += nbytes

    def phase(self, name: str) -> None:
        pass

    def layer_skipped(self, key: str, size: int) -> None:
        pass

    def layer_read_from(self, key: str, how: str) -> None:
        self._read_from[key] = how

    def layer_started(self, key: str, size: int) -> None:
        self._sent[key] = 0

    def layer_advanced(self, key: str, nbytes: int) -> None:
        self._sent[key] = self._sent.get(key, 0) + nbytes
        self._read += nbytes

    def layer_finished(self, key: str) -> None:
        pass

    # rendering --------------------------------------------------------------------------
    def dry_run(self, plan: TransferPlan) -> None:
        self.held.release()
        print(render_plan(plan), file=self.out)

    def finished(self, result: CopyResult) -> None:
        self.held.release()
        self._lines_in_order(every=True)
        print(render_summary(result), file=self.out)

    def fleet_finished(self, fleet: FleetResult) -> None:
        self.held.release()
        if not fleet.dry_run:
            print(render_fleet(fleet), file=self.out)

    def _first_line(self, key: str) -> bool:
        """A layer another image of this run already sent (Podman: one load per image) gets no
        second "Already exists" line: the summary counts it as sent."""
        if key in self._shown:
            return False
        self._shown.add(key)
        return True

    def _next(self, key: str) -> str:
        """`i/n`: the layer's place in the image (layers arrive in the export's order, not the image's).
        A blob we cannot name yet (a compressed one) is numbered by arrival."""
        self._seen += 1
        return f"{self._positions.get(key, self._seen)}/{self._total}"

    def _layer_line(self, key: str, line: str) -> None:
        """A layer's line, in the image's order: an export brings the layers in an order of its own
        (Docker's by digest), so a line waits until the lines of the layers below it are out. A blob
        we cannot name yet has no place: its line goes at once."""
        place = self._positions.get(key)
        if place is None:
            self._say_layer(line)
            return
        self._waiting[place] = line
        self._lines_in_order()

    def _lines_in_order(self, every: bool = False) -> None:
        """Say the waiting lines whose turn it is; `every`: all of them (the body is sent: layers not
        in it have no line to wait for)."""
        while self._waiting:
            upto = next(i for i in range(1, self._total + 2) if i not in self._said)
            place = min(self._waiting) if every else upto
            if place not in self._waiting:
                return
            self._said.add(place)
            self._say_layer(self._waiting.pop(place))

    def _say_layer(self, line: str) -> None:
        pass

    def _wire_text(self) -> str:
        seconds = max(time.monotonic() - self._started, 1e-6)
        how = f", {self.compression.value}" if self.compression is not Compression.NONE else ""
        return f"{human_size(self._wire)} on the wire at {human_size(self._wire / seconds)}/s{how}"


class PlainReporter(BaseReporter):
    """Line per layer, like the original tool: `1/23 511136ea3c... Already exists`."""

    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None:
        line = f"{side}: {endpoint} — {info.describe()}"
        self.held.hold(lambda: print(line, file=self.err))

    def layer_skipped(self, key: str, size: int) -> None:
        self.held.release()
        if self._first_line(key):
            self._layer_line(key, f"{self._next(key)} {short(key, 10)}... Already exists")

    def layer_finished(self, key: str) -> None:
        self.held.release()
        self._shown.add(key)
        estimate = self._estimates.get(key)
        about = f" / ~ {human_size(estimate)}" if estimate else ""
        sent = human_size(self._sent.get(key, 0))
        self._layer_line(key, f"{self._next(key)} {short(key, 10)}... {sent}{about}")

    def _say_layer(self, line: str) -> None:
        print(line, file=self.err, flush=True)

    def phase(self, name: str) -> None:
        self.held.release()
        self._lines_in_order(every=True)
        if name == "loading":
            print(f"sent {human_size(self._read)} ({self._wire_text()})", file=self.err)
        print(f"{PHASES[name]}...", file=self.err, flush=True)


PHASES = {"loading": "loading at the destination", "verifying": "verifying"}


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
            engine=info.name or info.kind.value,  # a node as a source: "containerd", whatever kind it reads as
            version=info.version,
            api_version=info.api_version,
        )

    def planned(self, plan: TransferPlan) -> None:
        super().planned(plan)
        self._emit("plan", **plan_dict(plan))

    def note(self, message: str) -> None:
        self._emit("note", message=message)

    def sending(self, layers: dict[str, int | None], compression: Compression) -> None:
        super().sending(layers, compression)
        self._last = time.monotonic()
        estimate = sum(size or 0 for size in layers.values())
        self._emit("phase", phase="sending", layers=len(layers), bytes_estimate=estimate, compression=compression.value)

    def wire_advanced(self, nbytes: int) -> None:
        super().wire_advanced(nbytes)
        if time.monotonic() - self._last > 0.5:
            self._last = time.monotonic()
            self._emit("wire", bytes_sent=self._read, wire_bytes=self._wire)

    def phase(self, name: str) -> None:
        if name == "loading":
            seconds = round(time.monotonic() - self._started, 3)
            self._emit("wire", bytes_sent=self._read, wire_bytes=self._wire, seconds=seconds)
        self._emit("phase", phase=name)

    def layer_skipped(self, key: str, size: int) -> None:
        self._emit("layer", id=key, status="exists", size=size)

    def layer_started(self, key: str, size: int) -> None:
        super().layer_started(key, size)
        self._last = time.monotonic()
        self._emit("layer", id=key, status="sending", size=size, sent=0, read_from=self._read_from.get(key, "export"))

    def layer_advanced(self, key: str, nbytes: int) -> None:
        super().layer_advanced(key, nbytes)
        if time.monotonic() - self._last > 0.5:  # keep the stream readable on big layers
            self._last = time.monotonic()
            self._emit("layer", id=key, status="sending", sent=self._sent[key])

    def layer_finished(self, key: str) -> None:
        self._emit(
            "layer", id=key, status="sent", sent=self._sent.get(key, 0), read_from=self._read_from.get(key, "export")
        )

    def dry_run(self, plan: TransferPlan) -> None:
        pass  # the plan event carries it

    def finished(self, result: CopyResult) -> None:
        self._emit("result", **result_dict(result))

    def failed(self, error: str) -> None:
        self._emit("result", error=error)

    def fleet_finished(self, fleet: FleetResult) -> None:
        self._emit("fleet", **fleet_dict(fleet))


class RichReporter(BaseReporter):
    """Live bars on a TTY: each layer and the total as read from the source (no rate: the
    uncompressed rate is not the link's), what crossed the link with its rate, then the
    destination's own phases. A finished layer becomes a plain line."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, held: Held | None = None) -> None:
        super().__init__(out, err, held)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(file=self.err)
        self.progress = Progress(
            _Only("spin", SpinnerColumn()),
            TextColumn("{task.description}"),
            _Only("bar", BarColumn()),
            _Only("bytes", DownloadColumn()),
            _Only("rate", _AverageRate()),
            _Only("eta", TimeRemainingColumn()),
            _Only("elapsed", TimeElapsedColumn()),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None
        self._wire_task: Any = None
        self._phase_task: Any = None
        self._to_come: dict[str, int | None] = {}
        self._known = 0  # exact sizes of the layers of this transfer that have started

    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None:
        line = f"[bold]{side}[/]: {endpoint} — {info.describe()}"
        self.held.hold(lambda: self.console.print(line))

    def note(self, message: str) -> None:
        self.held.release()
        self.console.print(f"note: {message}")

    def sending(self, layers: dict[str, int | None], compression: Compression) -> None:
        self.held.release()
        super().sending(layers, compression)
        self._finish_phase()
        self._to_come, self._known = dict(layers), 0
        for task in (self._overall, self._wire_task):
            if task is not None:
                self.progress.update(task, visible=False)
        self.progress.start()
        self._overall = self.progress.add_task(
            "total (read)", total=self._expected() or None, bar=True, bytes=True, eta=True
        )
        how = f" ({compression.value})" if compression is not Compression.NONE else ""
        self._wire_task = self.progress.add_task(f"on the wire{how}", total=None, bytes=True, rate=True)

    def _expected(self) -> int:
        return self._known + sum(size or 0 for size in self._to_come.values())

    def wire_advanced(self, nbytes: int) -> None:
        super().wire_advanced(nbytes)
        if self._wire_task is not None:
            self.progress.advance(self._wire_task, nbytes)

    def phase(self, name: str) -> None:
        self._lines_in_order(every=True)
        if name == "loading" and self._overall is not None:
            self.progress.update(self._overall, total=self._read, completed=self._read)
        if name == "loading" and self._wire_task is not None:
            self.progress.stop_task(self._wire_task)  # its rate stays that of the sending, as the summary's
        self._finish_phase()
        self._phase_task = self.progress.add_task(PHASES[name], total=None, spin=True, elapsed=True)

    def _finish_phase(self) -> None:
        if self._phase_task is not None:
            self.progress.update(self._phase_task, total=1, completed=1, spin=False)
            self._phase_task = None

    def layer_skipped(self, key: str, size: int) -> None:
        self.held.release()
        if self._first_line(key):
            self._layer_line(key, f"{self._next(key)} {short(key, 10)}... Already exists")

    def _say_layer(self, line: str) -> None:
        self.progress.console.print(line)

    def layer_started(self, key: str, size: int) -> None:
        super().layer_started(key, size)
        self._to_come.pop(key, None)
        self._known += size
        self._tasks[key] = self.progress.add_task(
            f"{self._next(key)} {short(key, 10)}", total=size, bar=True, bytes=True
        )
        if self._overall is not None:
            self.progress.update(self._overall, total=max(self._expected(), self._read))

    def layer_advanced(self, key: str, nbytes: int) -> None:
        super().layer_advanced(key, nbytes)
        self.progress.advance(self._tasks[key], nbytes)
        if self._overall is not None:
            # Sizes from history are estimates: the total grows rather than pass 100%.
            total = self._task(self._overall).total or 0
            self.progress.update(self._overall, advance=nbytes, total=max(total, self._read))

    def layer_finished(self, key: str) -> None:
        self._shown.add(key)
        task = self._tasks.pop(key, None)
        if task is not None:
            description = self._task(task).description
            self.progress.remove_task(task)
            self._layer_line(key, f"{description}... {human_size(self._sent.get(key, 0))}")

    def _task(self, task_id: Any) -> Any:
        """A task by its id: `Progress.tasks` is a list by position, which removals shift."""
        return next(t for t in self.progress.tasks if t.id == task_id)

    def finished(self, result: CopyResult) -> None:
        self.close()
        super().finished(result)

    def close(self) -> None:
        self._finish_phase()
        self.progress.stop()


class _AverageRate:
    """The wire's rate as the summary tells it: the bytes that crossed over the time the body took to
    go out (rich's own speed column is a rate of the last seconds, which the summary's never agrees with)."""

    def __new__(cls) -> Any:
        from rich.progress import ProgressColumn
        from rich.text import Text

        class AverageRate(ProgressColumn):
            def render(self, task: Any) -> Any:
                elapsed = task.elapsed
                if not elapsed:
                    return Text("?", style="progress.data.speed")
                return Text(f"{human_size(task.completed / elapsed)}/s", style="progress.data.speed")

        return AverageRate()


class _Only:
    """A rich column shown only for the tasks that ask for it (task field `name`)."""

    def __new__(cls, name: str, column: Any) -> Any:
        from rich.progress import ProgressColumn
        from rich.text import Text

        class Only(ProgressColumn):
            def render(self, task: Any) -> Any:
                return column.render(task) if task.fields.get(name) else Text("")

        return Only()


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


READ_FROM = ("store", "agent-store", "export")  # how a sent layer was read (Reporter.layer_read_from)


def result_dict(result: CopyResult) -> dict[str, Any]:
    left_out = {k: size for k, size in result.layers_left_out.items() if k not in result.layers_sent}
    if not result.transfers:  # nothing travelled: every layer is one the plan skipped
        left_out = {
            lay.diff_id: lay.size or 0 for p in result.plan.images for lay in p.layers if lay.decision is Decision.SKIP
        }
    sizes = {lay.diff_id: lay.size or 0 for p in result.plan.images for lay in p.layers}
    image_size = sum(sizes.values())
    pulled = list(result.pulled_bases.values())
    return {
        "tagged": result.tagged,
        "untagged": result.untagged,
        "moved": [
            {
                "ref": m.ref,
                "from": {"id": m.old_id, "platform": m.old_platform},
                "to": {"id": m.new_id, "platform": m.new_platform},
            }
            for m in result.moved
        ],
        "layers_sent": len(result.layers_sent),
        "layers_read": {how: list(result.read_from.values()).count(how) for how in READ_FROM},
        "layers_skipped": len(left_out),
        "bytes_sent": result.bytes_sent,
        "bytes_skipped": sum(left_out.values()),
        "wire_bytes": result.wire_bytes,
        "wire_seconds": round(result.sending_seconds, 3),
        "compression": result.compression.value,
        "image_bytes": image_size,
        "images_present": sum(1 for p in result.plan.images if p.present_as),
        "transfers": len(result.transfers),
        "resent": result.resent,
        "from_registry": [b.ref for b in pulled],
        "layers_from_registry": sum(b.missing for b in pulled),
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
    head = "\n".join(["; ".join(parts), *(moved_line(m) for m in result.moved)])
    if not result.transfers:
        return f"{head}\nnothing to send: the destination has every image, in {result.elapsed:.1f}s"
    layers = f"{d['layers_sent']} layer(s) sent, {d['layers_skipped']} already there"
    if d["images_present"]:
        layers += f", {d['images_present']} image(s) already at the destination"
    size = f"sent {human_size(d['bytes_sent'])} of a ~ {human_size(d['image_bytes'])} image"
    if result.sending_seconds > 0:
        rate = human_size(result.wire_bytes / result.sending_seconds)
        how = f", {result.compression.value}" if result.compression is not Compression.NONE else ""
        size += f" ({human_size(result.wire_bytes)} on the wire at {rate}/s{how})"
    extra = "; a second load sent what the store still lacked (see the note above)" if result.resent else ""
    return f"{head}\n{layers}; {size}{extra} in {result.elapsed:.1f}s"


def moved_line(move: TagMove) -> str:
    """A tag given to another platform's image than the one it named at the destination."""
    return (
        f"{move.ref} now names the {move.new_platform} image ({short(move.new_id)}); "
        f"it named the {move.old_platform} one ({short(move.old_id)})"
    )


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
    streams = f" and rewrote it into {fleet.streams} stream{'s' if fleet.streams > 1 else ''}" if fleet.streams else ""
    read = f"read {human_size(fleet.export_bytes)} from the source once"
    if fleet.store_bytes:
        read = f"read {human_size(fleet.store_bytes)} of layers from the source's storage" + (
            f" and {human_size(fleet.export_bytes)} of its export" if fleet.export_bytes else ""
        )
    lines.append(
        f"{len(fleet.hosts)} destinations: {len(fleet.hosts) - failed} ok, {failed} failed; "
        f"{read}{streams}, in {fleet.elapsed:.1f}s"
    )
    return "\n".join(lines)


def fleet_dict(fleet: FleetResult) -> dict[str, Any]:
    return {
        "destinations": len(fleet.hosts),
        "failed": len(fleet.failed),
        "export_bytes": fleet.export_bytes,
        "store_bytes": fleet.store_bytes,
        "streams": fleet.streams,
        "elapsed": round(fleet.elapsed, 3),
    }
