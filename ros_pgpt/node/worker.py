"""One inference thread with a bounded queue.

The Predictor is not thread-safe, so every model call runs on this one
thread. Service callbacks submit a job and wait for its future on their own
executor thread; when ``queue_size`` queries are already waiting the submit
is refused and the node answers "busy" at once instead of piling up. Standing
prompts take at most one slot of their own: a new frame does not queue a
second standing run while one is waiting (the newest frame wins).
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future


class Busy(Exception):
    pass


class InferenceWorker:
    def __init__(self, queue_size: int, on_error=None, name: str = 'ros_pgpt_inference'):
        self.queue_size = int(queue_size)
        self._jobs: deque = deque()
        self._standing = None  # (fn, future) of the waiting standing job, if any
        self._cond = threading.Condition()
        self._stop = False
        self._on_error = on_error
        self._queries_waiting = 0
        self.running = None  # 'query' | 'standing' | None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit_query(self, fn) -> Future:
        """Queue ``fn()`` for the worker; raises Busy when the queue is full."""
        future: Future = Future()
        with self._cond:
            if self._stop:
                raise Busy('the node is shutting down')
            if self._queries_waiting >= self.queue_size:
                raise Busy(f'busy: {self._queries_waiting} queries are already waiting '
                           f'(queue_size {self.queue_size}); try again later')
            self._queries_waiting += 1
            self._jobs.append(('query', fn, future))
            self._cond.notify()
        return future

    def submit_standing(self, fn) -> bool:
        """Queue a standing-prompt run, replacing one that is still waiting. False if stopped."""
        with self._cond:
            if self._stop:
                return False
            self._standing = fn
            self._cond.notify()
        return True

    def standing_pending(self) -> bool:
        with self._cond:
            return self._standing is not None or self.running == 'standing'

    @property
    def waiting(self) -> int:
        with self._cond:
            return self._queries_waiting

    def _loop(self):
        while True:
            with self._cond:
                while not self._stop and not self._jobs and self._standing is None:
                    self._cond.wait()
                if self._stop:
                    pending = list(self._jobs)
                    self._jobs.clear()
                    break
                if self._jobs:  # queries first: someone is waiting for them
                    kind, fn, future = self._jobs.popleft()
                    self._queries_waiting -= 1
                else:
                    kind, fn, future = 'standing', self._standing, None
                    self._standing = None
                self.running = kind
            try:
                result = fn()
                if future is not None:
                    future.set_result(result)
            except BaseException as exc:  # noqa: BLE001 - reported through the future / callback
                if future is not None:
                    future.set_exception(exc)
                elif self._on_error is not None:
                    self._on_error(exc)
            finally:
                with self._cond:
                    self.running = None
        for _kind, _fn, future in pending:
            future.set_exception(Busy('the node is shutting down'))

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._standing = None
            self._cond.notify_all()
        self._thread.join(timeout)
