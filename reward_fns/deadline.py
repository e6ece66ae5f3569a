"""A thread-safe CPU-time limit for pure-Python library code (sympy, via math-verify and mathruler).

math-verify bounds its own work with ``signal.alarm``, which only works on the main thread; verl calls reward
functions from worker threads. ``run_with_cpu_limit(seconds, fn, *args)`` is the thread-targeted equivalent:

* one daemon *watchdog* thread watches every running limited call; it measures the CPU time of the calling thread
  (``time.pthread_getcpuclockid``; wall time where that is unavailable), so a busy machine or other threads do
  not eat the budget;
* automatic garbage collection is held off while any limited call runs (``gc.disable``, restored when the last one
  ends): a collection runs in whichever thread allocates when one falls due, and collecting a process that has
  verl loaded (600 k objects) takes about 0.6 CPU-s, more than a reward call's whole budget, so a collection
  landing inside sympy's work scored a right answer 0. The garbage of a call that short is collected after it;
* when the budget is spent, it raises ``BudgetExceeded`` *in that thread* with ``PyThreadState_SetAsyncExc``. Like
  a signal-raised exception it is delivered between bytecodes of the running Python code (not inside a long C
  call — callers must keep inputs small so C-level work is short); it derives from ``BaseException`` so the
  libraries' ``except Exception`` clauses do not swallow it, and it is re-sent every ``REFIRE_S`` while the call
  is still running in case a bare ``except:`` did;
* the exit protocol (``active`` / ``firing`` flags, then clearing any pending exception) guarantees that no
  exception reaches the thread after ``run_with_cpu_limit`` has returned or raised.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import threading
import time

REFIRE_S = 0.02

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc  # (unsigned long thread_id, PyObject *exc or NULL)


class BudgetExceeded(BaseException):
    """The calling thread spent its CPU budget inside ``run_with_cpu_limit``."""


class _Call:
    __slots__ = ("active", "budget", "clock", "firing", "start", "tid")

    def __init__(self, budget: float) -> None:
        self.tid = threading.get_ident()
        try:
            self.clock = time.pthread_getcpuclockid(self.tid)
        except (AttributeError, OSError):  # not available on this platform: fall back to wall time
            self.clock = None
        self.start = 0.0
        self.budget = budget
        self.active = False
        self.firing = False

    def used(self) -> float:
        if self.clock is not None:
            try:
                return time.clock_gettime(self.clock) - self.start
            except OSError:
                pass
        return time.perf_counter() - self.start

    def now(self) -> float:
        return time.clock_gettime(self.clock) if self.clock is not None else time.perf_counter()


_cond = threading.Condition()
_calls: dict[int, _Call] = {}
_keys = itertools.count()
_watchdog: threading.Thread | None = None


def _watch() -> None:
    while True:
        with _cond:
            for key in [k for k, c in _calls.items() if not c.active]:
                del _calls[key]
            if not _calls:
                _cond.wait()
                continue
            sleep = 0.05
            for call in list(_calls.values()):
                left = call.budget - call.used()
                if left > 0:
                    sleep = min(sleep, left)
                    continue
                call.firing = True
                if call.active:
                    _set_async_exc(ctypes.c_ulong(call.tid), ctypes.py_object(BudgetExceeded))
                call.firing = False
                sleep = min(sleep, REFIRE_S)
            _cond.wait(max(sleep, 0.0005))


_gc_lock = threading.Lock()
_gc_holders = 0  # limited calls running now, in all threads
_gc_was_enabled = False  # whether automatic collection was on when the first of them started


def _hold_gc() -> None:
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1


def _release_gc() -> None:
    global _gc_holders
    with _gc_lock:
        _gc_holders -= 1
        if _gc_holders == 0 and _gc_was_enabled:
            gc.enable()


def _reset_after_fork() -> None:
    """A forked child has no watchdog thread and runs no limited call, and the parent's locks may have been held
    at the fork."""
    global _cond, _calls, _watchdog, _gc_lock, _gc_holders
    _cond = threading.Condition()
    _calls = {}
    _watchdog = None
    _gc_lock = threading.Lock()
    if _gc_holders and _gc_was_enabled:
        gc.enable()
    _gc_holders = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _arm(call: _Call) -> None:
    global _watchdog
    with _cond:
        if _watchdog is None or not _watchdog.is_alive():
            _watchdog = threading.Thread(target=_watch, name="reward_fns-cpu-limit", daemon=True)
            _watchdog.start()
        call.start = call.now()
        _calls[next(_keys)] = call
        call.active = True
        _cond.notify()


def run_with_cpu_limit(seconds: float, fn, *args):
    """``fn(*args)``, interrupted with ``BudgetExceeded`` once this thread has used ``seconds`` of CPU in it;
    no automatic garbage collection runs (in any thread) meanwhile."""
    if seconds <= 0:
        raise BudgetExceeded
    call = _Call(seconds)
    _hold_gc()
    try:
        _arm(call)
        return fn(*args)
    finally:
        # No eval-breaker check happens before this store, so nothing can interrupt between the body and it.
        call.active = False
        while True:  # settle: wait out a firing in progress, then drop any exception still pending for us
            try:
                while call.firing:
                    time.sleep(0)
                _set_async_exc(ctypes.c_ulong(call.tid), None)
                break
            except BudgetExceeded:
                pass
        _release_gc()
