"""The bottom of the package: nothing here imports any other part of visionzoo.

errors (one-line messages, exit 2), atomic file writes, figure saving, the device/AMP/seed helpers
of a run, and the parameter/MAC counters.
"""
