"""One inference thread with a bounded query queue and a reserved turn for standing prompts.

The Predictor is not thread-safe, so every model call runs on this one
thread. Jobs are handed in from the executor thread and their results come
back through a completion callback (the node completes an awaited future
with it), so no executor thread ever blocks on the model.

Scheduling:
* **Queries** wait in a queue of at most ``queue_size``; one more is refused
  at once with ``Busy`` (an honest "busy": the queue really is full).
* **Standing prompts** hold one slot of their own (a newer frame replaces a
  standing run that has not started) and reserved turns: a waiting standing
  run goes next unless the last ``MAX_STANDING_IN_A_ROW`` jobs were standing
  runs and a query waits. A standing run waits for the query in flight, so
  when a query and a standing run together take longer than the rate's
  period the standing prompts fall behind their grid; two turns in a row let
  them catch up (they get up to two thirds of the turns under a query flood
  and keep their rate), while a query waits behind at most two standing runs.
* Queries run in arrival order. A latest-frame query picks its frame when it
  starts (the node reuses the frame the model holds while it is recent), so
  queries behind a standing run share its vision work.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable


class Busy(Exception):
    pass


SHUTTING_DOWN = 'the node is shutting down'
MAX_STANDING_IN_A_ROW = 2  # standing runs in a row while queries wait (see the module docstring)


@dataclass
class Job:
    run: Callable[[], Any]
    done: Callable[[Any, BaseException | None], None] | None  # (result, error); None for standing runs


class InferenceWorker:
    def __init__(self, queue_size: int, on_error=None, name: str = 'ros_pgpt_inference'):
        self.queue_size = int(queue_size)
        self._queries: deque[Job] = deque()
        self._standing: Job | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._on_error = on_error
        self._standing_streak = 0  # standing runs since the last query
        self.running = None  # 'query' | 'standing' | None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit_query(self, run, done) -> None:
        """Queue ``run()``; ``done(result, error)`` is called on the worker thread. Raises Busy when full."""
        with self._cond:
            if self._stop:
                raise Busy(SHUTTING_DOWN)
            if len(self._queries) >= self.queue_size:
                raise Busy(f'busy: {len(self._queries)} queries are already waiting '
                           f'(queue_size {self.queue_size}); try again later')
            self._queries.append(Job(run, done))
            self._cond.notify()

    def submit_standing(self, run) -> bool:
        """Queue a standing-prompt run, replacing one that is still waiting. False if stopped."""
        with self._cond:
            if self._stop:
                return False
            self._standing = Job(run, None)
            self._cond.notify()
        return True

    def standing_pending(self) -> bool:
        with self._cond:
            return self._standing is not None or self.running == 'standing'

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queries)

    def _next_job(self) -> tuple[str, Job]:
        """The scheduling rule (see the module docstring); called with the lock held."""
        if self._standing is not None and (not self._queries or self._standing_streak < MAX_STANDING_IN_A_ROW):
            job, self._standing = self._standing, None
            self._standing_streak += 1
            return 'standing', job
        self._standing_streak = 0
        return 'query', self._queries.popleft()

    def _loop(self):
        while True:
            with self._cond:
                while not self._stop and not self._queries and self._standing is None:
                    self._cond.wait()
                if self._stop:
                    break
                kind, job = self._next_job()
                self.running = kind
            result, error = None, None
            try:
                result = job.run()
            except BaseException as exc:  # noqa: BLE001 - reported through done() / on_error
                error = exc
            with self._cond:
                self.running = None
                self._cond.notify_all()
            if job.done is not None:
                job.done(result, error)
            elif error is not None and self._on_error is not None:
                self._on_error(error)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the job in flight, answer every waiting query ``Busy('the node is shutting down')``."""
        with self._cond:
            self._stop = True
            self._standing = None
            pending, self._queries = list(self._queries), deque()
            self._cond.notify_all()
        for job in pending:
            job.done(None, Busy(SHUTTING_DOWN))
        self._thread.join(timeout)
