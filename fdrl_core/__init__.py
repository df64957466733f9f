"""The torch-free contract every fdrl package shares, each concept once.

Imports nothing else of ours (shared/DESIGN.md §3): fdrl_train, fdrl_export,
fdrl_runtime and fdrl_eval import from here, never the other way round.
"""
__version__ = "0.1.0"  # the one version of every fdrl package and command
