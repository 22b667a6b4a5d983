"""Test-only stand-in for torchvision (tests/stubs/README.md): enough to import spandrel."""

__version__ = "0.0.0+upconv-test-stub"
