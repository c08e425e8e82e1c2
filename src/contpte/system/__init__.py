"""Machine, Process: syscalls, user accesses, CPUs."""

from .machine import Machine
from .process import Process, Thread
from .sched import Scheduler

__all__ = ["Machine", "Process", "Thread", "Scheduler"]
