"""fdrl-bench and the reference-style loops it measures against."""
