"""Reusable helpers for tests that talk ROS 2 (rclpy over Fast DDS, loopback).

Every test gets its own ROS world:

* ``isolated_ros_env(tmp_dir)`` -> environment dict with a private
  ``ROS_DOMAIN_ID``, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and
  ``ROS_HOME``/``ROS_LOG_DIR`` in a temp folder (rclpy would log to ~/.ros);
* ``unique_name(prefix)`` -> a topic/service name no other test run uses
  (several developers run tests on the same machine at once);
* ``RosProcess`` -> a child process (python script or ``-c`` code) with its
  output captured to a file, stopped (SIGINT, then SIGKILL) on exit, and
  whose output is attached to assertion messages;
* ``wait_for(predicate, timeout)``, ``wait_for_service(...)``,
  ``wait_for_subscribers(...)``, ``spin_until(...)``: discovery waits with
  timeouts (never fixed sleeps);
* ``rclpy_context(env)`` -> an initialised private ``rclpy.Context`` for
  this process, using the isolated environment.

The fixtures in conftest.py (``ros_env``, ``ros_context``) wrap these.
"""
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_counter = itertools.count()

# Environment variables that would leak the caller's ROS setup into a test.
_LEAKY_VARS = ('ROS_LOCALHOST_ONLY', 'ROS_STATIC_PEERS', 'ROS_DISCOVERY_SERVER',
               'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE',
               'ROS_SECURITY_ENABLE', 'RMW_IMPLEMENTATION')


def pick_domain_id():
    """A domain id in 1..100 that differs between processes and calls.

    Domain ids above ~101 collide with ephemeral ports on Linux. Collisions
    between concurrent test runs are still possible, so tests also use
    unique topic/service names (``unique_name``). ``ROS_PGPT_TEST_DOMAIN_IDS=55-59``
    keeps one runner's tests inside its own range (several runners share a machine).
    """
    low, high = 1, 100
    if os.environ.get('ROS_PGPT_TEST_DOMAIN_IDS'):
        low, _, high = os.environ['ROS_PGPT_TEST_DOMAIN_IDS'].partition('-')
        low, high = int(low), int(high or low)
    spread = os.getpid() * 7 + next(_counter) * 13 + int.from_bytes(os.urandom(1), 'little')
    return low + spread % (high - low + 1)


def unique_name(prefix='test'):
    """A ROS name (valid for topics and services) unique to this call."""
    return f'/{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}'


def isolated_ros_env(tmp_dir, domain_id=None, base=None):
    """Environment for an isolated ROS world rooted in ``tmp_dir``."""
    env = dict(os.environ if base is None else base)
    for var in _LEAKY_VARS:
        env.pop(var, None)
    ros_home = Path(tmp_dir) / 'ros_home'
    (ros_home / 'log').mkdir(parents=True, exist_ok=True)
    env.update({
        'ROS_DOMAIN_ID': str(pick_domain_id() if domain_id is None else domain_id),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'ROS_HOME': str(ros_home),
        'ROS_LOG_DIR': str(ros_home / 'log'),
        'RCUTILS_COLORIZED_OUTPUT': '0',
        'PYTHONUNBUFFERED': '1',
    })
    return env


def poll(predicate, timeout, step, message='condition'):
    """Call ``step()`` between checks of ``predicate()`` until truthy; return its value or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f'{message} not met within {timeout} s')
        step()


def wait_for(predicate, timeout, interval=0.02, message='condition'):
    """Poll ``predicate()`` until truthy; return its value or raise TimeoutError."""
    return poll(predicate, timeout, lambda: time.sleep(interval), message)


@contextlib.contextmanager
def executor_for(node_or_executor):
    """Yield an executor for a node (a private one, on the node's context)."""
    if hasattr(node_or_executor, 'add_node'):  # already an executor
        yield node_or_executor
        return
    from rclpy.executors import SingleThreadedExecutor
    executor = SingleThreadedExecutor(context=node_or_executor.context)
    executor.add_node(node_or_executor)
    try:
        yield executor
    finally:
        executor.remove_node(node_or_executor)
        executor.shutdown(timeout_sec=1.0)


def spin_until(node_or_executor, predicate, timeout, message='condition'):
    """Spin a node (or an executor) until ``predicate()`` is truthy, or time out."""
    with executor_for(node_or_executor) as executor:
        return poll(predicate, timeout, lambda: executor.spin_once(timeout_sec=0.05), message)


def wait_for_service(client, timeout=20.0):
    """Wait until a service client sees its server (discovery)."""
    deadline = time.monotonic() + timeout
    while not client.wait_for_service(timeout_sec=0.1):
        if time.monotonic() > deadline:
            raise TimeoutError(f'service {client.srv_name} not available within {timeout} s')
    return True


def wait_for_subscribers(publisher, count=1, timeout=20.0):
    """Wait until ``publisher`` has matched at least ``count`` subscriptions."""
    return wait_for(lambda: publisher.get_subscription_count() >= count, timeout,
                    message=f'{count} subscriber(s) on {publisher.topic_name}')


def call_service(node_or_executor, client, request, timeout=20.0):
    """Call a service synchronously by spinning the caller; return the response."""
    wait_for_service(client, timeout)
    future = client.call_async(request)
    with executor_for(node_or_executor) as executor:
        executor.spin_until_future_complete(future, timeout_sec=timeout)
    if not future.done():
        raise TimeoutError(f'no response from {client.srv_name} within {timeout} s')
    return future.result()


@contextlib.contextmanager
def rclpy_context(env):
    """A private, initialised rclpy Context using ``env``'s ROS settings.

    The domain id is passed explicitly; discovery range and log dirs are read
    by rcl from the process environment, so they are set for the duration.
    """
    import rclpy
    keys = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_HOME', 'ROS_LOG_DIR', 'ROS_DOMAIN_ID')
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: env[k] for k in keys})
    ctx = rclpy.Context()
    try:
        rclpy.init(context=ctx, domain_id=int(env['ROS_DOMAIN_ID']))
        yield ctx
    finally:
        rclpy.try_shutdown(context=ctx)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class RosProcess:
    """A child process with captured output, stopped on exit.

    ``RosProcess([script, arg...], env)`` runs a python script with this
    interpreter; ``RosProcess.code('...', env)`` runs ``python -c``;
    ``RosProcess(['/path/exe', ...], env, python=False)`` runs a program.
    Use as a context manager. ``output()`` returns what it printed so far;
    ``wait_for_output(text, timeout)`` waits for a line (e.g. "ready").
    """

    def __init__(self, argv, env, cwd=None, python=True, log_path=None):
        argv = [str(a) for a in argv]
        self.argv = [sys.executable, *argv] if python else argv
        # faulthandler: a child that ignores SIGINT is sent SIGABRT first (see stop), which
        # prints every thread's Python stack into the log before the kill.
        self.env = {**env, 'PYTHONFAULTHANDLER': '1'} if python else env
        log_dir = Path(env.get('ROS_HOME', '.'))
        self.log_path = Path(log_path) if log_path else log_dir / f'proc_{os.getpid()}_{next(_counter)}.log'
        self._log = open(self.log_path, 'w+b')
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @classmethod
    def code(cls, source, env, **kwargs):
        return cls(['-c', source], env, **kwargs)

    def output(self):
        self._log.flush()
        return self.log_path.read_text(errors='replace')

    def wait_for_output(self, text, timeout=20.0):
        def seen():
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                raise RuntimeError(f'process exited ({self.proc.returncode}) before printing '
                                   f'{text!r}:\n{self.output()}')
            return False
        try:
            return wait_for(seen, timeout, interval=0.05, message=f'output {text!r}')
        except TimeoutError as exc:
            raise TimeoutError(f'{exc}; output so far:\n{self.output()}') from None

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGINT (clean rclpy shutdown), then SIGABRT (stack dump), then SIGKILL; return the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for sig in (signal.SIGABRT, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, sig)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(3.0)
                self.proc.wait(timeout)
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def venv_prefix():
    """The prefix of the running interpreter (the venv scripts/setup.sh made)."""
    return Path(sys.prefix)
