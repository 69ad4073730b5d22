"""Media in and out: video and image files (``video_io``), clip operations (``clips``), atomic
writes and new names (``files``), numbered output names confined to their folder (``outputs``)."""
