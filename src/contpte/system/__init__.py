"""Machine, Process: syscalls, user accesses, CPUs."""

from .machine import Machine
from .process import Process

__all__ = ["Machine", "Process"]
