"""Publishing output directories to the Hugging Face Hub."""

from .push import check_token, push_folder, resolve_token

__all__ = ["check_token", "push_folder", "resolve_token"]
