"""labsys — the lab stand-in for systemd (TEST INFRASTRUCTURE, not product code).

Pure parts (unit files, time spans, command lines) live in their own modules so they
can be unit-tested on the controller; `init` is PID 1 of a lab host.
"""
