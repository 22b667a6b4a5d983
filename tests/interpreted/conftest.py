"""Tests of the Triton kernel in Triton's interpreter: a separate process (see
``tests/test_triton_interpret.py``); ``tests/conftest.py`` leaves this folder out of the main
session unless ``TRITON_INTERPRET=1`` is set."""
