"""Writing frames out: streaming video/GIF/PNG-folder sinks with atomic completion."""

from avatarcli.media.writers import FrameSink, open_frame_sink, parse_background

__all__ = ["FrameSink", "open_frame_sink", "parse_background"]
