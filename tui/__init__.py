"""orac's Textual user interface."""
