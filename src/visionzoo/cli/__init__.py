"""The `visionzoo` command."""
