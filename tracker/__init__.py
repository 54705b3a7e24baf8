"""fkd-track: real-time facial keypoint tracking.

The runtime package: frame sources, Haar detection, crops, tracking, smoothing, overlay, CSV and the CLI.
"""

__version__ = "0.1.0"
