"""Tracks a person can extend without typing an Audio ID: finished tracks from their
history, and in sandbox mode the sandbox's demo tracks."""

from __future__ import annotations

from dataclasses import dataclass

from kie.sandbox import DEMO_TRACKS
from studio.store import TaskStore

HISTORY_LIMIT = 50


@dataclass(frozen=True)
class SourceTrack:
    """A track to extend: what the form fills in from it."""

    audio_id: str
    title: str
    model: str | None
    duration: float | None
    origin: str  # "history" or "demo"

    @property
    def label(self) -> str:
        length = f", {self.duration:.0f} s" if self.duration else ""
        model = f", {self.model}" if self.model else ""
        prefix = "Demo: " if self.origin == "demo" else ""
        return f"{prefix}{self.title}{model}{length}"


def source_tracks(store: TaskStore, visitor_id: str, *, sandbox: bool) -> list[SourceTrack]:
    tracks = [
        SourceTrack(
            audio_id=track.id,
            title=track.title or track.id,
            model=task.model,
            duration=track.duration,
            origin="history",
        )
        for task, track in store.finished_tracks(visitor_id, limit=HISTORY_LIMIT)
    ]
    if sandbox:
        tracks += [
            SourceTrack(
                audio_id=demo.id,
                title=demo.title,
                model=demo.model,
                duration=demo.duration,
                origin="demo",
            )
            for demo in DEMO_TRACKS
        ]
    return tracks
