"""skyra-stream: grounded AI-generated-video verdicts for every upload, with Skyra on vLLM."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skyra-stream")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
