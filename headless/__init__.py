"""Running the pack's graphs without the ComfyUI frontend: loading the pack the way ComfyUI does and
converting UI-format workflows to the API format (``workflow``, ``ui_format``), validating and running
them in-process (``executor``), driving running ComfyUI servers (``comfy_client``), and the commands
``sora run``, ``sora export-api`` and ``sora batch`` (``run``, ``batch``, ``overrides``; ``cli`` is the
whole ``sora`` command)."""
