"""Machine, Process: syscalls, user accesses, CPUs (``contpte.system.machine``, ``.process``)."""
