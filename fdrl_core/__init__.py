"""The torch-free contract every fdrl package shares, each concept once.

Imports nothing else of ours (shared/DESIGN.md §3): fdrl_train, fdrl_export,
fdrl_runtime and fdrl_eval import from here, never the other way round.
"""
