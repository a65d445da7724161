"""``sitebus.pidfile``: a public path README documents, kept for the module
now at ``sitebus.process.pidfile``."""

from sitebus.process.pidfile import (
    PIDFile,
    ProcessInfo,
    Verdict,
    parse_pid,
    pidfile_verdict,
    program_name,
)

__all__ = [
    "PIDFile",
    "ProcessInfo",
    "Verdict",
    "parse_pid",
    "pidfile_verdict",
    "program_name",
]
