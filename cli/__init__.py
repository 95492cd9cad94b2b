"""The command line and the wiring: the only package that knows every other one."""
