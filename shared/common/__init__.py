"""Low utilities several layers use: settings from the environment, JSON logs, JSON from outside
parsed with limits, and the one retry policy. They import only ``shared.domain``."""
