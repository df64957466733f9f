"""fdrl_eval: sample quality (FID/KID, the digit Fréchet distance, MMD and mode coverage).

Imports fdrl_train (datasets, the digit classifier, metrics) and fdrl_runtime (how
samples are stored); nothing imports it.
"""
