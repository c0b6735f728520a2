"""The experiment's artifacts, written: each body is built from the
:class:`~tunelib.prefect._artifact_book.ArtifactBook` when its write starts (so a write
that waited carries the newest state), then created or updated through
:class:`~tunelib.prefect._writes.PrefectWrites`. Runs on the recorder's event loop; the
recorder (``_record``) schedules these coroutines on its lanes.

* the leaderboard: a new artifact version under its key at every rewrite (Prefect keeps
  them all: the leaderboard as trials finished);
* progress, learning curves, a trial's table and checkpoint links: created once, then
  updated in place (``PATCH /artifacts/{id}``): a run shows one of each, always current.

Example (inside the recorder's loop)::

    artifacts = ArtifactWriter(writes, book)
    await artifacts.rewrite(Rewritten.LEADERBOARD, experiment_flow_run_id)
    await artifacts.write_trial("t1", trial_flow_run_id)
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Dict, List, Optional

from tunelib.prefect._artifact_book import ArtifactBook, Rewritten
from tunelib.prefect._artifact_content import (
    ArtifactBody,
    checkpoint_links,
    leaderboard,
    learning_curves,
    progress,
    trial_table,
)
from tunelib.prefect._payloads import hms
from tunelib.prefect._trial_dirs import TrialDirs
from tunelib.prefect._writes import PrefectWrites

ErrorReport = Callable[[str, Exception], None]


class ArtifactWriter:
    """Writes the artifacts ``book`` describes (see the module docstring)."""

    def __init__(self, writes: PrefectWrites, book: ArtifactBook):
        self._writes = writes
        self.book = book
        self._ids: Dict[str, str] = {}     # key -> the artifact this recorder updates
        self._dirs: Optional[TrialDirs] = None

    async def rewrite(self, kind: Rewritten, flow_run_id: str, final: bool = False) -> None:
        """Write the experiment's ``kind`` artifact as it is now."""
        self.book.taken(kind, time.time())
        body = self._body(kind, final)
        if body is None:
            return
        t0 = time.monotonic()
        await self._put(body, flow_run_id, new_version=kind is Rewritten.LEADERBOARD)
        self.book.wrote(kind, time.monotonic() - t0)

    async def finish(self, flow_run_id: str, on_error: ErrorReport) -> None:
        """The final version of each of the experiment's artifacts; a failed one is
        reported and does not keep the others from being written."""
        for kind in Rewritten:
            try:
                await self.rewrite(kind, flow_run_id, final=True)
            except Exception as exc:
                on_error(f"final {kind.value} artifact", exc)

    async def write_trial(self, trial_id: str, flow_run_id: str) -> None:
        """The trial's metric table and, when it reported checkpoints, their links."""
        seen = self.book.trials[trial_id].results.seen
        try:
            for body in await self.trial_bodies(trial_id):
                await self._put(body, flow_run_id)
        finally:  # written or reported as not recorded: either way not again for these
            self.book.trial_written(trial_id, seen)

    async def trial_bodies(self, trial_id: str) -> List[ArtifactBody]:
        """The trial's metric table and, when it reported checkpoints, their links, as
        they are now (the caller tells the book ``trial_written`` once they are sent)."""
        tm = self.book.trials[trial_id]
        info = self.book.info
        bodies = [trial_table(info, tm, self.book.curve_key)]
        if tm.latest_checkpoint is not None:
            if self._dirs is None:
                self._dirs = TrialDirs(info.path)
            folder = await asyncio.to_thread(self._dirs.folder, tm.name)
            links = checkpoint_links(info, tm, folder)
            if links is not None:
                bodies.append(links)
        return bodies

    # ------------------------------------------------------------------ internals
    def _body(self, kind: Rewritten, final: bool) -> Optional[ArtifactBody]:
        book = self.book
        trials = list(book.trials.values())
        if kind is Rewritten.LEADERBOARD:
            return leaderboard(book.info, trials, hms(time.time()))
        if kind is Rewritten.PROGRESS:
            return progress(book.info, trials, final=final)
        return learning_curves(book.info, trials, book.curve_key)

    async def _put(self, body: ArtifactBody, flow_run_id: str, new_version: bool = False) -> None:
        artifact_id = self._ids.get(body.key)
        if artifact_id is not None and not new_version:
            await self._writes.update_artifact(artifact_id, body.description, body.data)
            return
        self._ids[body.key] = await self._writes.create_artifact(
            body.key, body.kind.value, body.description, body.data, flow_run_id)
