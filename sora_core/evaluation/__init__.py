"""``sora eval``: prompt sets and scoring (``evaluate``), the generation tasks (``tasks``), reports
(``report``) and figures (``figures``), measured with the world's captioner and metrics."""
