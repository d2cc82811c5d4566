"""The inference worker's scheduling: a bounded query queue, reserved turns for standing prompts."""
import threading

import pytest

from ros_pgpt.ros.worker import MAX_STANDING_IN_A_ROW, Busy, InferenceWorker


def _run_order(standing_runs: int, queries: int, queue_size: int = 10) -> list[str]:
    """Hold the worker on a first query, queue ``queries`` more and a standing run that resubmits itself
    ``standing_runs`` times (a standing prompt behind its rate); the order in which jobs ran."""
    order, started, release, finished = [], threading.Event(), threading.Event(), threading.Event()
    worker = InferenceWorker(queue_size)
    remaining = {'standing': standing_runs, 'queries': queries}

    def blocker():
        order.append('first')
        started.set()
        release.wait(10)

    def query():
        order.append('Q')
        remaining['queries'] -= 1
        if remaining['queries'] == 0 and remaining['standing'] == 0:
            finished.set()

    def standing():
        order.append('S')
        remaining['standing'] -= 1
        if remaining['standing'] > 0:
            worker.submit_standing(standing)
        elif remaining['queries'] == 0:
            finished.set()

    try:
        worker.submit_query(blocker, lambda *_: None)
        assert started.wait(10)
        for _ in range(queries):
            worker.submit_query(query, lambda *_: None)
        worker.submit_standing(standing)
        release.set()
        assert finished.wait(10), order
    finally:
        worker.stop()
    return order


def test_standing_runs_catch_up_two_in_a_row_then_a_query():
    order = _run_order(standing_runs=5, queries=3)
    assert order == ['first', 'S', 'S', 'Q', 'S', 'S', 'Q', 'S', 'Q']
    assert MAX_STANDING_IN_A_ROW == 2


def test_standing_runs_back_to_back_when_no_query_waits():
    assert _run_order(standing_runs=4, queries=0) == ['first', 'S', 'S', 'S', 'S']


def test_a_full_queue_answers_busy_and_stop_answers_the_waiting():
    release = threading.Event()
    answers = []
    worker = InferenceWorker(1)
    try:
        started = threading.Event()
        worker.submit_query(lambda: (started.set(), release.wait(10)), lambda *_: None)
        assert started.wait(10)  # the first job is running, the queue is empty again
        worker.submit_query(lambda: None, lambda result, error: answers.append(error))
        with pytest.raises(Busy, match='queue_size 1'):
            worker.submit_query(lambda: None, lambda *_: None)
    finally:
        worker.stop(timeout=0.1)
        release.set()
    assert len(answers) == 1 and isinstance(answers[0], Busy) and 'shutting down' in str(answers[0])
